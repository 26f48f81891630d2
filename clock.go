package event

import (
	"sync/atomic"
	"time"
)

// clockBase is a recent wall-clock reading with its monotonic reading.
var clockBase atomic.Pointer[time.Time]

// now returns the wall-clock time, at half the cost of time.Now: it reads
// only the monotonic clock and adds the elapsed time to a base wall-clock
// reading taken at most a second ago. A step of the wall clock (a manual
// change, an NTP step) is therefore seen up to a second late; gradual NTP
// adjustment affects both clocks alike.
func now() time.Time {
	if b := clockBase.Load(); b != nil {
		if el := time.Since(*b); el >= 0 && el < time.Second {
			return b.Add(el).Round(0)
		}
	}
	t := time.Now()
	clockBase.Store(&t)
	return t.Round(0)
}
