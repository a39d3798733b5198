package job

import (
	"math"
	"time"
)

// maxETA bounds a meaningful estimate (a year); beyond it the ETA is unknown.
const maxETA = 365 * 24 * 3600

// estimate fills in.Rate and in.ETASeconds from the progress and the time
// since the start (now for a running job, the end otherwise). An
// interrupted job's end is when the next daemon started, not when it
// stopped, so it gets neither.
func estimate(in *Info, now time.Time) {
	in.Rate, in.ETASeconds = 0, nil
	end := now
	switch in.State {
	case Running:
	case Done, Failed, Cancelled:
		if in.Finished == nil {
			return
		}
		end = *in.Finished
	default:
		return
	}
	secs := end.Sub(in.Started).Seconds()
	if in.Done <= 0 || secs <= 0 {
		return
	}
	rate := float64(in.Done) / secs
	in.Rate = int64(rate)
	if in.State == Running && in.Total > in.Done {
		if left := math.Ceil(float64(in.Total-in.Done) / rate); left <= maxETA {
			eta := int64(left)
			in.ETASeconds = &eta
		}
	}
}
