package apischema

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// MaxReply bounds the reply body a client reads (the largest listing of
// a busy daemon is far below it).
const MaxReply = 64 << 20

// Error is an error reply of either API: the HTTP status and the
// ErrorBody. Match Code, never Message.
type Error struct {
	Status  int    // HTTP status
	Code    string // one of the Code* constants (or a newer one)
	Message string // the server's message, for people
}

func (e *Error) Error() string { return e.Message }

// TransportError is a request that got no reply: the connection, TLS or
// the request itself failed. Err is net/http's error without its
// *url.Error wrapping (which names a made-up host for unix sockets).
type TransportError struct{ Err error }

func (e *TransportError) Error() string { return e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

// Call is the one JSON round trip of both APIs' clients (internal/api's
// Client and internal/node's PeerClient). It sends in as a JSON body (nil:
// no body), with token as a bearer token unless it is "", to target; it
// decodes a 2xx reply into out: nil discards it, a *bytes.Buffer gets the
// raw body, anything else is JSON-decoded. A non-2xx reply is an *Error
// (a body that is not an ErrorBody becomes CodeInternal with the status
// and the body's text); no reply is a *TransportError, or ctx's error
// once ctx ended.
func Call(ctx context.Context, hc *http.Client, method, target, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, target, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, target, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &TransportError{Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxReply))
	if err != nil {
		return fmt.Errorf("%s %s: read reply: %w", method, req.URL.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var eb ErrorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			eb = ErrorBody{Error: fmt.Sprintf("%s %s: %s: %s", method, req.URL.Path, resp.Status,
				strings.TrimSpace(string(data))), Code: CodeInternal}
		}
		return &Error{Status: resp.StatusCode, Code: eb.Code, Message: eb.Error}
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *bytes.Buffer:
		o.Write(data)
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode reply: %w", method, req.URL.Path, err)
	}
	return nil
}
