package event_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ncore-io/event"
)

// The benchmarks measure end to end: from the first publish until every
// handler has seen every event. Each names its baseline, run in the same
// invocation:
//
//   - chan: a buffered channel feeding a pool of goroutines that call the
//     handler directly, the least an asynchronous bus can cost;
//   - map: a synchronous map[string][]func under a sync.RWMutex, the least a
//     synchronous bus can cost.

type payload struct {
	UserID string
	Email  string
}

var benchPayload = &payload{UserID: "u-1", Email: "u@example.com"}

// waiter counts handled events and lets the benchmark wait for the last.
type waiter struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func newWaiter(want int) *waiter { return &waiter{want: int64(want), done: make(chan struct{})} }

func (w *waiter) hit() {
	if w.n.Add(1) == w.want {
		close(w.done)
	}
}

func reportRate(b *testing.B, events int) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkAsync(b *testing.B) {
	for _, handlers := range []int{1, 3} {
		name := strconv.Itoa(handlers) + "handler"
		b.Run(name+"/chan", func(b *testing.B) {
			w := newWaiter(b.N * handlers)
			hs := make([]func(*payload), handlers)
			for i := range hs {
				hs[i] = func(*payload) { w.hit() }
			}
			ch := make(chan *payload, event.DefaultBufferSize)
			var wg sync.WaitGroup
			for range event.DefaultWorkers {
				wg.Go(func() {
					for p := range ch {
						for _, h := range hs {
							h(p)
						}
					}
				})
			}
			b.ResetTimer()
			for range b.N {
				ch <- benchPayload
			}
			<-w.done
			b.StopTimer()
			close(ch)
			wg.Wait()
			reportRate(b, b.N)
		})
		b.Run(name+"/bus", func(b *testing.B) {
			benchBus(b, handlers, nil)
		})
	}
	b.Run("ordered1000keys/bus", func(b *testing.B) {
		keys := make([]event.PublishOption, 1000)
		for i := range keys {
			keys[i] = event.Aggregate("user-" + strconv.Itoa(i))
		}
		benchBus(b, 1, keys)
	})
}

func benchBus(b *testing.B, handlers int, keys []event.PublishOption) {
	bus, err := event.New[*payload]()
	if err != nil {
		b.Fatal(err)
	}
	w := newWaiter(b.N * handlers)
	for range handlers {
		if _, err := event.Subscribe(bus, "user.registered", func(context.Context, event.Event[*payload]) error {
			w.hit()
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		var err error
		if keys != nil {
			err = bus.Publish(ctx, "user.registered", benchPayload, keys[i%len(keys)])
		} else {
			err = bus.Publish(ctx, "user.registered", benchPayload)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	<-w.done
	b.StopTimer()
	if err := bus.Close(ctx); err != nil {
		b.Fatal(err)
	}
	reportRate(b, b.N)
}

func BenchmarkSync(b *testing.B) {
	b.Run("map", func(b *testing.B) {
		var mu sync.RWMutex
		var n int
		m := map[string][]func(*payload){"user.registered": {func(*payload) { n++ }}}
		b.ResetTimer()
		for range b.N {
			mu.RLock()
			hs := m["user.registered"]
			mu.RUnlock()
			for _, h := range hs {
				h(benchPayload)
			}
		}
		b.StopTimer()
		if n != b.N {
			b.Fatalf("handled %d of %d", n, b.N)
		}
		reportRate(b, b.N)
	})
	b.Run("bus", func(b *testing.B) {
		bus, err := event.New[*payload](event.WithSync())
		if err != nil {
			b.Fatal(err)
		}
		var n int
		if _, err := event.Subscribe(bus, "user.registered", func(context.Context, event.Event[*payload]) error {
			n++
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ResetTimer()
		for range b.N {
			if err := bus.Publish(ctx, "user.registered", benchPayload); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if n != b.N {
			b.Fatalf("handled %d of %d", n, b.N)
		}
		if err := bus.Close(ctx); err != nil {
			b.Fatal(err)
		}
		reportRate(b, b.N)
	})
}
