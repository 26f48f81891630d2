package event

import (
	"sync/atomic"
	"time"
)

// clockBase pairs a wall-clock reading, in Unix nanoseconds, with the
// time.Time it came from, whose monotonic reading measures the time since.
type clockBase struct {
	wall int64
	mono time.Time
}

var clock atomic.Pointer[clockBase]

// wallNanos returns the wall-clock time in Unix nanoseconds, for about half
// the cost of time.Now: time.Now reads two clocks (wall and monotonic, one
// vDSO call each on Linux), and this reads only the monotonic one and adds
// the time elapsed to a base wall-clock reading taken at most a second ago.
// A step of the wall clock (a manual change, an NTP step) is therefore seen
// up to a second late; gradual NTP adjustment affects both clocks alike.
//
// It returns plain nanoseconds rather than a time.Time so that the caller
// derives both the event's time and its ID's millisecond from one reading,
// without time.Time's arithmetic. It is safe for concurrent use.
func wallNanos() int64 {
	if b := clock.Load(); b != nil {
		if el := time.Since(b.mono); el >= 0 && el < time.Second {
			return b.wall + int64(el)
		}
	}
	t := time.Now()
	w := t.UnixNano()
	clock.Store(&clockBase{wall: w, mono: t})
	return w
}
