package event

import (
	"testing"
	"time"
)

// The per-event costs of stamping an envelope, each alone: the publish
// path reads the clock once per event (wallNanos) and derives both the
// event's time and its ID's millisecond from it.

var (
	sinkNanos int64
	sinkTime  time.Time
	sinkID    [16]byte
)

// BenchmarkTimeNow is what the bus does not pay: two clock reads (wall and
// monotonic).
func BenchmarkTimeNow(b *testing.B) {
	for range b.N {
		sinkTime = time.Now()
	}
}

func BenchmarkWallNanos(b *testing.B) {
	for range b.N {
		sinkNanos = wallNanos()
	}
}

func BenchmarkNewID(b *testing.B) {
	ms := time.Now().UnixMilli()
	for range b.N {
		sinkID = newID(ms)
	}
}

func BenchmarkNewIDParallel(b *testing.B) {
	ms := time.Now().UnixMilli()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			sinkID = newID(ms)
		}
	})
}
