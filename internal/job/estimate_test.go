package job

import (
	"testing"
	"time"
)

func TestEstimate(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	at := func(s int) *time.Time { x := t0.Add(time.Duration(s) * time.Second); return &x }
	for _, c := range []struct {
		name     string
		in       Info
		now      time.Time
		wantRate int64
		wantETA  int64 // -1: omitted
	}{
		{"Running", Info{State: Running, Done: 100, Total: 400}, *at(10), 10, 30},
		{"RunningRoundsUp", Info{State: Running, Done: 300, Total: 400}, *at(10), 30, 4},
		{"NoProgressYet", Info{State: Running, Done: 0, Total: 400}, *at(10), 0, -1},
		{"UnknownTotal", Info{State: Running, Done: 100, Total: 0}, *at(10), 10, -1},
		{"PastTotal", Info{State: Running, Done: 500, Total: 400}, *at(10), 50, -1},
		{"NoTimeYet", Info{State: Running, Done: 1, Total: 400}, t0, 0, -1},
		{"Done", Info{State: Done, Done: 400, Total: 400, Finished: at(20)}, *at(99), 20, -1},
		{"Cancelled", Info{State: Cancelled, Done: 100, Total: 400, Finished: at(5)}, *at(99), 20, -1},
		{"Interrupted", Info{State: Interrupted, Done: 100, Total: 400, Finished: at(5)}, *at(99), 0, -1},
		{"Hopeless", Info{State: Running, Done: 1, Total: 1 << 62}, *at(10), 0, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			in.Started = t0
			estimate(&in, c.now)
			gotETA := int64(-1)
			if in.ETASeconds != nil {
				gotETA = *in.ETASeconds
			}
			if in.Rate != c.wantRate || gotETA != c.wantETA {
				t.Errorf("got rate %d eta %d, want rate %d eta %d", in.Rate, gotETA, c.wantRate, c.wantETA)
			}
		})
	}
}
