package event_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// A durable subscription whose checkpoint retention deleted past stops with
// ErrCursorExpired instead of skipping.
func TestDurableCursorExpired(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		s := open(t)
		bus := newStoreBus[Registered](t, s)
		got := newSeen[Registered]()
		sub, _ := event.Subscribe(bus, ">", got.handler, event.Durable("slow"))
		old := time.Now().Add(-48 * time.Hour)
		bus.Publish(ctx, "user.registered", Registered{N: 0}, event.EventTime(old))
		got.waitFor(t, "the first event", atLeast[Registered](1))
		sub.Unsubscribe()
		if err := bus.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// More old events arrive while the subscription is away; retention
		// deletes them before it comes back.
		bus2 := newStoreBus[Registered](t, s)
		for i := 1; i <= 3; i++ {
			bus2.Publish(ctx, "user.registered", Registered{N: i}, event.EventTime(old))
		}
		if n, err := s.DeleteBefore(ctx, time.Now().Add(-24*time.Hour)); err != nil || n != 4 {
			t.Fatalf("DeleteBefore = %d, %v", n, err)
		}
		sub2, _ := event.Subscribe(bus2, ">", got.handler, event.Durable("slow"))
		deadline := time.Now().Add(10 * time.Second)
		for sub2.Err() == nil && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
		}
		if !errors.Is(sub2.Err(), store.ErrCursorExpired) {
			t.Fatalf("Err() = %v, want store.ErrCursorExpired", sub2.Err())
		}
		if n := len(got.snapshot()); n != 1 {
			t.Fatalf("handled %d events; the expired ones must not be skipped silently", n)
		}
	})
}

func TestRetentionOption(t *testing.T) {
	ctx := t.Context()
	s := openSQLite(t)
	seed := newStoreBus[Registered](t, s)
	seed.Publish(ctx, "user.registered", Registered{N: 1}, event.EventTime(time.Now().Add(-100*24*time.Hour)))
	seed.Publish(ctx, "user.registered", Registered{N: 2})
	seed.Close(ctx)
	bus := newStoreBus[Registered](t, s, event.WithRetention(90*24*time.Hour, time.Hour))
	deadline := time.Now().Add(10 * time.Second)
	for {
		recs, _, err := s.Read(ctx, store.Query{})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retention left %d records, want 1", len(recs))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := bus.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := event.New[int](event.WithRetention(time.Hour, 0)); err == nil {
		t.Fatal("retention without a store accepted")
	}
}
