package eventtest_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventtest"
)

// newBus returns a real asynchronous bus, closed when the test ends.
func newBus[T any](t *testing.T, opts ...event.Option) *event.Bus[T] {
	t.Helper()
	bus, err := event.New[T](opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bus.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return bus
}

// shortCtx returns a context that is done soon, for tests of the timeout
// path: what is awaited there never comes.
func shortCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func TestRequireReceivedAsyncHandler(t *testing.T) {
	t.Parallel()
	bus := newBus[any](t)
	_, err := event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[userRegistered]) error {
		return bus.Publish(ctx, "email.sent", emailSent{To: ev.Payload.Email})
	})
	if err != nil {
		t.Fatal(err)
	}
	w := eventtest.Watch(t, bus, ">")
	if err := bus.Publish(t.Context(), "user.registered", userRegistered{"u1", "ada@example.com"}); err != nil {
		t.Fatal(err)
	}

	sent := eventtest.RequireReceived[emailSent](t.Context(), t, w, "email.sent")
	reg := eventtest.RequireReceived[userRegistered](t.Context(), t, w, "user.*")
	if sent.Payload.To != "ada@example.com" {
		t.Errorf("email sent to %q", sent.Payload.To)
	}
	if sent.CausationID != reg.ID || sent.CorrelationID != reg.CorrelationID {
		t.Errorf("email.sent causation %s correlation %s, want %s and %s", sent.CausationID, sent.CorrelationID, reg.ID, reg.CorrelationID)
	}
}

func TestRequireReceivedTakesEachEventOnce(t *testing.T) {
	t.Parallel()
	bus := newBus[string](t)
	w := eventtest.Watch(t, bus, "job.*")
	for _, topic := range []string{"job.a", "job.b", "job.a", "other.a"} {
		if err := bus.Publish(t.Context(), topic, topic); err != nil {
			t.Fatal(err)
		}
	}
	// Out of publish order, and twice for job.a: each call takes one event.
	first := eventtest.RequireReceived[string](t.Context(), t, w, "job.b")
	a1 := eventtest.RequireReceived[string](t.Context(), t, w, "job.a")
	a2 := eventtest.RequireReceived[string](t.Context(), t, w, "job.a")
	// Each takes the earliest event not yet taken.
	seen := w.Events()
	if first.ID != seen[1].ID || a1.ID != seen[0].ID || a2.ID != seen[2].ID {
		t.Errorf("took %s, %s, %s; want %s, %s, %s", first.ID, a1.ID, a2.ID, seen[1].ID, seen[0].ID, seen[2].ID)
	}

	f := runTB(func(tb testing.TB) { eventtest.RequireReceived[string](shortCtx(t), tb, w, "job.a") })
	wantFatal(t, f, `no event on "job.a" with a payload of type string`, "context deadline exceeded",
		`watcher on "job.*" saw 3 event(s)`, "job.a (string) ×2", "job.b (string) ×1")
	if n := len(w.Events()); n != 3 {
		t.Errorf("Events() = %d, want 3 (other.a is outside the pattern)", n)
	}
}

func TestRequireReceivedWrongType(t *testing.T) {
	t.Parallel()
	bus := newBus[any](t)
	w := eventtest.Watch(t, bus, ">")
	if err := bus.Publish(t.Context(), "user.registered", "just a string"); err != nil {
		t.Fatal(err)
	}
	f := runTB(func(tb testing.TB) { eventtest.RequireReceived[userRegistered](shortCtx(t), tb, w, "user.registered") })
	wantFatal(t, f, "payload of type eventtest_test.userRegistered", "saw 1 event(s)", "user.registered (string) ×1")
	// The mismatch was skipped, not taken.
	if ev := eventtest.RequireReceived[string](t.Context(), t, w, "user.registered"); ev.Payload != "just a string" {
		t.Errorf("got %+v", ev)
	}
}

func TestRequireReceivedWaits(t *testing.T) {
	t.Parallel()
	bus := newBus[int](t)
	w := eventtest.Watch(t, bus, "tick")
	// Publish only once RequireReceived is already waiting: the watcher must wake it.
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		<-started
		for i := range 3 {
			if err := bus.Publish(context.Background(), "tick", i); err != nil {
				t.Error(err)
			}
		}
	})
	close(started)
	got := []int{
		eventtest.RequireReceived[int](t.Context(), t, w, "tick").Payload,
		eventtest.RequireReceived[int](t.Context(), t, w, "tick").Payload,
		eventtest.RequireReceived[int](t.Context(), t, w, "tick").Payload,
	}
	wg.Wait()
	if got[0] != 0 || got[1] != 1 || got[2] != 2 {
		t.Errorf("got %v, want [0 1 2]", got)
	}
}

func TestWatcherNext(t *testing.T) {
	t.Parallel()
	bus := newBus[string](t)
	w := eventtest.Watch(t, bus, "n.>")
	for _, p := range []string{"one", "two", "three"} {
		if err := bus.Publish(t.Context(), "n."+p, p); err != nil {
			t.Fatal(err)
		}
	}
	// RequireReceived takes "two"; Next skips what was taken.
	eventtest.RequireReceived[string](t.Context(), t, w, "n.two")
	var got []string
	for range 2 {
		ev, err := w.Next(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Payload)
	}
	if fmt.Sprint(got) != "[one three]" {
		t.Errorf("Next returned %v, want [one three]", got)
	}
	_, err := w.Next(shortCtx(t))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with nothing left: err = %v, want DeadlineExceeded", err)
	}
}

func TestWatchManyPublishers(t *testing.T) {
	t.Parallel()
	const publishers, each = 4, 100
	bus := newBus[int](t, event.WithWorkers(4))
	// Handlers on the workers publish the follow-ups the test waits for.
	_, err := event.Subscribe(bus, "in", func(ctx context.Context, ev event.Event[int]) error {
		return bus.Publish(ctx, "out", ev.Payload)
	})
	if err != nil {
		t.Fatal(err)
	}
	w := eventtest.Watch(t, bus, "out")
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				if err := bus.Publish(context.Background(), "in", p*each+i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := make(map[int]bool)
	for range publishers * each {
		ev := eventtest.RequireReceived[int](t.Context(), t, w, "out")
		if seen[ev.Payload] {
			t.Fatalf("payload %d taken twice", ev.Payload)
		}
		seen[ev.Payload] = true
	}
	wg.Wait()
}

func TestWatchStopsAtCleanup(t *testing.T) {
	t.Parallel()
	bus := newBus[string](t)
	var w *eventtest.Watcher[string]
	f := runTB(func(tb testing.TB) {
		w = eventtest.Watch(tb, bus, "x")
		if err := bus.Publish(context.Background(), "x", "during"); err != nil {
			tb.Error(err)
		}
	})
	wantPass(t, f)
	if err := bus.Publish(t.Context(), "x", "after"); err != nil {
		t.Fatal(err)
	}
	if evs := w.Events(); len(evs) != 1 || evs[0].Payload != "during" {
		t.Errorf("Events() = %+v, want only the event published during the test", evs)
	}
	if n := bus.Stats().Subscribers["x"]; n != 0 {
		t.Errorf("%d subscriptions left on x", n)
	}
}

func TestWatchErrors(t *testing.T) {
	t.Parallel()
	bus := newBus[string](t)
	f := runTB(func(tb testing.TB) { eventtest.Watch(tb, bus, "a..b") })
	wantFatal(t, f, "eventtest: watch:", "a..b")

	w := eventtest.Watch(t, bus, ">")
	f = runTB(func(tb testing.TB) { eventtest.RequireReceived[string](t.Context(), tb, w, "a.>.b") })
	wantFatal(t, f, "eventtest: RequireReceived:", "a.>.b")

	closed, err := event.New[string]()
	if err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	f = runTB(func(tb testing.TB) { eventtest.Watch(tb, closed, ">") })
	wantFatal(t, f, "eventtest: watch:", "closed")
}
