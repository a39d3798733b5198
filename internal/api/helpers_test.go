package api

import (
	"encoding/json"
	"net/http"
	"testing"
)

func decodeBody(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decode %s body: %v", resp.Status, err)
	}
}
