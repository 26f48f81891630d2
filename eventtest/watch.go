package eventtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// DefaultTimeout is how long [Watcher.Next] and [RequireReceived] wait when their
// context has no deadline, so that a test whose event never comes fails
// with a useful message instead of hanging until the test binary's timeout.
const DefaultTimeout = 5 * time.Second

// Watcher records the events published on a real [event.Bus] to topics
// matching a pattern, for integration tests that wait for asynchronous
// handlers to publish. Create one with [Watch]; read it with [Watcher.Next],
// [RequireReceived] and [Watcher.Events].
//
// Each event is taken at most once: [Watcher.Next] takes the earliest event
// not yet taken, and [RequireReceived] the earliest one not yet taken that it
// matches, skipping (without taking) the others. So RequireReceived calls may come in
// any order, which suits asynchronous handlers whose events interleave
// unpredictably, and two RequireReceived calls for the same topic need two events.
//
// A Watcher is safe for concurrent use by multiple goroutines.
type Watcher[T any] struct {
	pattern string
	bus     *event.Bus[T]

	mu      sync.Mutex
	events  []event.Event[T]
	taken   []bool
	changed chan struct{} // closed and replaced when an event arrives
}

// Watch starts recording the events published on bus to topics matching
// pattern, and stops when the test ends (in tb.Cleanup). Events published
// before Watch returns are not seen, so call it before the code under test
// publishes. It fails the test with tb.Fatalf if pattern is invalid or bus
// is closed, so it must be called from the test's goroutine.
//
// The recorder is a synchronous subscription (see [event.Sync]): it runs in
// the publisher's goroutine, never waits, and does not take a worker from
// the bus's own handlers.
func Watch[T any](tb testing.TB, bus *event.Bus[T], pattern string) *Watcher[T] {
	tb.Helper()
	w := &Watcher[T]{pattern: pattern, bus: bus, changed: make(chan struct{})}
	sub, err := event.Subscribe(bus, pattern, w.record, event.Sync(), event.Name("eventtest.Watch("+pattern+")"))
	if err != nil {
		tb.Fatalf("eventtest: watch: %v", err)
	}
	tb.Cleanup(sub.Unsubscribe)
	return w
}

func (w *Watcher[T]) record(_ context.Context, ev event.Event[T]) error {
	w.mu.Lock()
	w.events = append(w.events, ev)
	w.taken = append(w.taken, false)
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
	return nil
}

// Events returns every event the watcher has seen so far, taken or not, in
// the order they were published (for events published concurrently, the
// order their publishes reached the bus).
func (w *Watcher[T]) Events() []event.Event[T] {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]event.Event[T](nil), w.events...)
}

// Next takes and returns the earliest event not yet taken, waiting for one
// until ctx is done, or for [DefaultTimeout] if ctx has no deadline. It
// returns an error wrapping ctx's error (or [context.DeadlineExceeded]) if
// none comes in time.
func (w *Watcher[T]) Next(ctx context.Context) (event.Event[T], error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	ev, ok := w.take(ctx, func(*event.Event[T]) bool { return true })
	if !ok {
		return event.Event[T]{}, fmt.Errorf("eventtest: next event on %q: %w", w.pattern, context.Cause(ctx))
	}
	return *ev, nil
}

// take waits until ctx is done for an event not yet taken that match
// accepts, and takes it.
func (w *Watcher[T]) take(ctx context.Context, match func(*event.Event[T]) bool) (*event.Event[T], bool) {
	for {
		w.mu.Lock()
		for i := range w.events {
			if !w.taken[i] && match(&w.events[i]) {
				w.taken[i] = true
				ev := w.events[i]
				w.mu.Unlock()
				return &ev, true
			}
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// RequireReceived takes and returns the earliest event seen by w, not yet taken, that
// was published to a topic matching topic (a topic, or a pattern with
// wildcards) with a payload of type E. It waits for one until ctx is done,
// or for [DefaultTimeout] if ctx has no deadline; then it fails the test
// with tb.Fatalf and a message listing what w saw instead.
//
// E is given explicitly and T is inferred from w:
//
//	ev := eventtest.RequireReceived[EmailSent](t.Context(), t, w, "email.sent")
//
// It must be called from the test's goroutine, as tb.Fatalf requires.
func RequireReceived[E, T any](ctx context.Context, tb testing.TB, w *Watcher[T], topic string) event.Event[E] {
	tb.Helper()
	if err := store.ValidatePattern(topic); err != nil {
		tb.Fatalf("eventtest: RequireReceived: %v", err)
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	start := time.Now()
	ev, ok := w.take(ctx, func(ev *event.Event[T]) bool {
		if !store.MatchTopic(topic, ev.Topic) {
			return false
		}
		_, ok := event.As[E](*ev)
		return ok
	})
	if !ok {
		seen := w.Events()
		msg := "nothing"
		if len(seen) > 0 {
			msg = fmt.Sprintf("%d event(s):\n%s", len(seen), summarize(seen))
		}
		tb.Fatalf("eventtest: no event on %q with a payload of type %s after %v (%v); watcher on %q saw %s%s",
			topic, typeName[E](), time.Since(start).Round(time.Millisecond), context.Cause(ctx), w.pattern, msg, outboxHint(w))
		return event.Event[E]{} // unreachable: Fatalf stops the goroutine
	}
	typed, _ := event.As[E](*ev)
	return typed
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// outboxHint explains, on a bus with a store, why an event stored with
// PublishTx is not seen: a Watcher is an in-process subscription.
func outboxHint[T any](w *Watcher[T]) string {
	if w.bus.Store() == nil {
		return ""
	}
	return "\n(a Watcher sees what Publish and PublishBatch deliver in process; events stored with PublishTx reach only durable subscriptions: subscribe one with event.Durable to wait for them)"
}
