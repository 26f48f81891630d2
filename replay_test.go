package event_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// sparseLog fills st with n records that no test pattern matches, appended
// straight to the store, so that a filtered read finds nothing in its
// first stretch of the log.
func sparseLog(t *testing.T, st store.Store, n int) {
	t.Helper()
	now := time.Now()
	for i := 0; i < n; {
		batch := make([]store.Record, 0, 1000)
		for ; i < n && len(batch) < cap(batch); i++ {
			batch = append(batch, store.Record{ID: fmt.Sprintf("filler-%d", i), Topic: "common.event", Kind: store.KindDomain, Time: now, ContentType: "application/json", Payload: []byte(`{}`)})
		}
		if err := st.Append(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
}

// Replay and a durable subscription's catch-up read on past a page that a
// store returned empty with a moved cursor (a filtered read that looked at
// part of the log), rather than take it for the end. Both drivers look at
// 10,000 records per read of 500.
func TestReadPastEmptyPages(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		// Only the Store interface: no Notifier, so with an hour's poll
		// interval a subscription that waited for news would wait that long.
		st := struct{ store.Store }{open(t)}
		bus := newStoreBus[Registered](t, st, event.WithPollInterval(time.Hour))
		sparseLog(t, st, 10_000)
		if err := bus.Publish(ctx, "rare.found", Registered{N: 7}); err != nil {
			t.Fatal(err)
		}

		var got []int
		n, err := event.Replay(ctx, bus, store.Query{Topic: "rare.*"}, func(ctx context.Context, ev event.Event[Registered]) error {
			got = append(got, ev.Payload.N)
			return nil
		})
		if err != nil || n != 1 || len(got) != 1 || got[0] != 7 {
			t.Fatalf("Replay = %d, %v, delivered %v; want the one rare event", n, err, got)
		}

		delivered := make(chan int, 1)
		_, err = event.Subscribe(bus, "rare.*", func(ctx context.Context, ev event.Event[Registered]) error {
			delivered <- ev.Payload.N
			return nil
		}, event.Durable("rare"))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-delivered:
			if v != 7 {
				t.Fatalf("durable subscription got %d, want 7", v)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("durable subscription did not catch up past an empty page")
		}
	})
}

// Rebuilding a read model by replay yields the state live processing built.
func TestReplayRebuildsReadModel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		bus := newStoreBus[Registered](t, open(t))
		type model struct {
			mu     sync.Mutex
			counts map[string]int
		}
		apply := func(m *model) event.Handler[Registered] {
			return func(ctx context.Context, ev event.Event[Registered]) error {
				m.mu.Lock()
				defer m.mu.Unlock()
				m.counts[ev.AggregateID] += ev.Payload.N
				return nil
			}
		}
		live := &model{counts: map[string]int{}}
		event.Subscribe(bus, "user.>", apply(live), event.Name("read-model"))
		for i := range 200 {
			agg := fmt.Sprintf("u-%d", i%5)
			if err := bus.Publish(ctx, "user.registered", Registered{N: i}, event.Aggregate(agg)); err != nil {
				t.Fatal(err)
			}
		}
		bus.Publish(ctx, "order.placed", Registered{N: 1000}) // not matched by the replay filter
		rebuilt := &model{counts: map[string]int{}}
		n, err := event.Replay(ctx, bus, store.Query{Topic: "user.>"}, apply(rebuilt))
		if err != nil || n != 200 {
			t.Fatalf("Replay = %d, %v; want 200, nil", n, err)
		}
		if err := bus.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(live.counts) != fmt.Sprint(rebuilt.counts) {
			t.Fatalf("rebuilt %v, live %v", rebuilt.counts, live.counts)
		}
	})
}

func TestReplayToSubscription(t *testing.T) {
	ctx := t.Context()
	s := openSQLite(t)
	bus := newStoreBus[Registered](t, s, event.WithSync())
	for i := range 10 {
		bus.Publish(ctx, "user.registered", Registered{N: i})
	}
	got := newSeen[Registered]()
	event.Subscribe(bus, "user.>", got.handler, event.Name("projector"))
	n, err := bus.ReplayTo(ctx, "projector", store.Query{Since: time.Now().Add(-time.Hour), Limit: 4})
	if err != nil || n != 4 {
		t.Fatalf("ReplayTo = %d, %v; want 4, nil", n, err)
	}
	if evs := got.snapshot(); len(evs) != 4 || evs[0].Payload.N != 0 || evs[3].Payload.N != 3 {
		t.Fatalf("replayed %v", evs)
	}
	if _, err := bus.ReplayTo(ctx, "nobody", store.Query{}); err == nil {
		t.Fatal("ReplayTo an unknown subscription succeeded")
	}
	if _, err := event.Replay(ctx, bus, store.Query{Topic: "user..x"}, got.handler); !errors.Is(err, event.ErrInvalidTopic) {
		t.Fatalf("Replay with a bad pattern: %v", err)
	}
}

// Replay reads ahead of its handler; a handler that stops it (an error, a
// limit, a cancelled context) stops the reading too, and a cancelled
// context is an error, not a short replay.
func TestReplayStops(t *testing.T) {
	t.Parallel()
	s := openSQLite(t)
	bus := newStoreBus[int](t, s)
	var batch []event.Message[int]
	for i := range 5000 {
		batch = append(batch, event.Message[int]{Topic: "n", Payload: i})
	}
	if err := bus.PublishBatch(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	n, err := event.Replay(t.Context(), bus, store.Query{Limit: 2500}, func(context.Context, event.Event[int]) error { return nil })
	if err != nil || n != 2500 {
		t.Fatalf("Replay with Limit 2500 = %d, %v", n, err)
	}
	next := 0
	n, err = event.Replay(t.Context(), bus, store.Query{}, func(_ context.Context, ev event.Event[int]) error {
		if ev.Payload != next {
			return fmt.Errorf("event %d out of order, want %d", ev.Payload, next)
		}
		next++
		return nil
	})
	if err != nil || n != 5000 {
		t.Fatalf("Replay of everything = %d, %v", n, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	n, err = event.Replay(ctx, bus, store.Query{}, func(context.Context, event.Event[int]) error {
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) || n >= 5000 {
		t.Fatalf("Replay whose context was cancelled = %d, %v; want context.Canceled before the end", n, err)
	}
}
