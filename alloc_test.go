package event_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event"
)

// TestPublishAllocations checks what one Publish allocates: the delivery
// of a queued event, or only the handlers' context for a synchronous one,
// whose event stays in the publisher's frame.
func TestPublishAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	type payload struct{ N int }
	ctx := context.Background()
	cases := []struct {
		name string
		opts []event.Option
		sub  []event.SubscribeOption
		want float64
	}{
		{"sync bus", []event.Option{event.WithSync()}, nil, 1},
		{"sync subscription on an async bus", nil, []event.SubscribeOption{event.Sync()}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBus[payload](t, c.opts...)
			n := 0
			subscribe(t, b, "a.b", func(context.Context, event.Event[payload]) error { n++; return nil }, c.sub...)
			got := testing.AllocsPerRun(1000, func() {
				if err := b.Publish(ctx, "a.b", payload{N: 1}); err != nil {
					t.Fatal(err)
				}
			})
			if got > c.want {
				t.Errorf("Publish allocates %.1f times per event, want at most %.0f", got, c.want)
			}
			if n == 0 {
				t.Error("the handler did not run")
			}
		})
	}
}

// TestQueuedPublishMemory checks what a queued event costs in memory, the
// publisher's and the worker's together: one allocation, the handlers'
// context, as the delivery with the event is recycled.
func TestQueuedPublishMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	type payload struct{ N int }
	b := newBus[payload](t)
	done := make(chan struct{})
	subscribe(t, b, "a.b", func(context.Context, event.Event[payload]) error { done <- struct{}{}; return nil })
	ctx := context.Background()
	deadline := time.NewTimer(waitTimeout) // one timer: time.After allocates
	defer deadline.Stop()
	publish := func() {
		if err := b.Publish(ctx, "a.b", payload{N: 1}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-deadline.C:
			t.Fatal("the handler did not run")
		}
	}
	for range 100 { // warm up: the pool, the route cache
		publish()
	}
	const n = 1000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		publish()
	}
	runtime.ReadMemStats(&after)
	allocs := float64(after.Mallocs-before.Mallocs) / n
	bytes := float64(after.TotalAlloc-before.TotalAlloc) / n
	// A little slack for the pool refilling after a GC cycle empties it.
	if allocs > 1.1 || bytes > 96 {
		t.Errorf("a queued event costs %.2f allocations, %.0f bytes; want 1 allocation of 64 bytes", allocs, bytes)
	}
}

// TestKeptHandlerContext checks that a handler's context stays its event's
// after the handler returned, however many events follow (queued ones
// reuse their deliveries): a follow-up published with it later records
// the right cause.
func TestKeptHandlerContext(t *testing.T) {
	for _, opts := range [][]event.Option{nil, {event.WithSync()}} {
		const n = 2000
		b := newBus[int](t, opts...)
		var (
			mu      sync.Mutex
			kept    context.Context
			keptID  uuid.UUID
			handled int
		)
		all := make(chan struct{})
		subscribe(t, b, "first", func(ctx context.Context, ev event.Event[int]) error {
			mu.Lock()
			defer mu.Unlock()
			if ev.Payload == 0 {
				kept, keptID = ctx, ev.ID
			}
			if handled++; handled == n {
				close(all)
			}
			return nil
		})
		causes := make(chan uuid.UUID, 1)
		subscribe(t, b, "follow", func(_ context.Context, ev event.Event[int]) error {
			causes <- ev.CausationID
			return nil
		})
		for i := range n {
			if err := b.Publish(context.Background(), "first", i); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-all:
		case <-time.After(waitTimeout):
			t.Fatal("the events were not all handled")
		}
		mu.Lock()
		k, id := kept, keptID
		mu.Unlock()
		if err := b.Publish(k, "follow", 0); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-causes:
			if got != id {
				t.Errorf("follow-up published with a kept context has cause %s, want %s", got, id)
			}
		case <-time.After(waitTimeout):
			t.Fatal("the follow-up was not handled")
		}
	}
}
