package event_test

import (
	"bytes"
	"context"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
	"github.com/ncore-io/event/store/sqlitestore"
)

// waitTimeout bounds every wait in these tests. It is far above what any of
// them needs, so that a slow machine under -race cannot make them flaky; a
// test only reaches it when the behaviour under test is broken.
const waitTimeout = 15 * time.Second

// newBus returns a bus built with opts that is closed when the test ends.
func newBus[T any](tb testing.TB, opts ...event.Option) *event.Bus[T] {
	tb.Helper()
	b, err := event.New[T](opts...)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			tb.Errorf("Close at cleanup: %v", err)
		}
	})
	return b
}

// closeBus closes b, failing the test if it does not drain in time.
func closeBus[T any](tb testing.TB, b *event.Bus[T]) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		tb.Fatalf("Close: %v", err)
	}
}

// subscribe is event.Subscribe that fails the test on error.
func subscribe[E, T any](tb testing.TB, b *event.Bus[T], pattern string, h event.Handler[E], opts ...event.SubscribeOption) *event.Subscription {
	tb.Helper()
	s, err := event.Subscribe(b, pattern, h, opts...)
	if err != nil {
		tb.Fatalf("Subscribe(%q): %v", pattern, err)
	}
	return s
}

// publish is Bus.Publish that fails the test on error.
func publish[T any](tb testing.TB, b *event.Bus[T], topic string, p T, opts ...event.PublishOption) {
	tb.Helper()
	if err := b.Publish(context.Background(), topic, p, opts...); err != nil {
		tb.Fatalf("Publish(%q): %v", topic, err)
	}
}

// waitUntil polls cond until it holds, failing the test after waitTimeout.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// recv receives from ch, failing the test after waitTimeout.
func recv[V any](tb testing.TB, ch <-chan V, what string) V {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		tb.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// goid returns the current goroutine's number, a goroutine-local marker to
// tell where a handler runs.
func goid() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	return string(bytes.Fields(buf)[1]) // "goroutine 123 [running]: ..."
}

// record is a concurrency-safe list of what handlers saw.
type record[V any] struct {
	mu   sync.Mutex
	vals []V
}

func (l *record[V]) add(v V) {
	l.mu.Lock()
	l.vals = append(l.vals, v)
	l.mu.Unlock()
}

func (l *record[V]) get() []V {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]V(nil), l.vals...)
}

func (l *record[V]) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.vals)
}

// backend opens a fresh store of one kind for a test.
type backend struct {
	name string
	open func(t testing.TB) store.Store
}

var backends = []backend{
	{"sqlite", openSQLite},
	{"postgres", openPG},
}

func openSQLite(t testing.TB) store.Store {
	t.Helper()
	s, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatalf("open sqlite store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPG(t testing.TB) store.Store {
	t.Helper()
	s, err := pgstore.Open(t.Context(), pgtest.DSN(t))
	if err != nil {
		t.Fatalf("open postgres store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func forEachBackend(t *testing.T, f func(t *testing.T, open func(testing.TB) store.Store)) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			f(t, be.open)
		})
	}
}

type Registered struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	N      int    `json:"n"`
}

func newStoreBus[T any](t testing.TB, s store.Store, opts ...event.Option) *event.Bus[T] {
	t.Helper()
	bus, err := event.New[T](append([]event.Option{event.WithStore(s), event.WithPollInterval(20 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Close(context.Background()) })
	return bus
}

// seen collects events a handler received, safely across goroutines.
type seen[T any] struct {
	mu     sync.Mutex
	events []event.Event[T]
	signal chan struct{}
}

func newSeen[T any]() *seen[T] { return &seen[T]{signal: make(chan struct{}, 1)} }

func (s *seen[T]) handler(ctx context.Context, ev event.Event[T]) error {
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.mu.Unlock()
	select {
	case s.signal <- struct{}{}:
	default:
	}
	return nil
}

func (s *seen[T]) snapshot() []event.Event[T] {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

// waitFor waits until cond holds on the events seen, or fails the test.
func (s *seen[T]) waitFor(t testing.TB, what string, cond func([]event.Event[T]) bool) []event.Event[T] {
	t.Helper()
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	for {
		evs := s.snapshot()
		if cond(evs) {
			return evs
		}
		select {
		case <-s.signal:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s: have %d events", what, len(evs))
		}
	}
}

func atLeast[T any](n int) func([]event.Event[T]) bool {
	return func(evs []event.Event[T]) bool { return len(evs) >= n }
}

// fixedTime is a time for records appended by hand.
var fixedTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// busKinds are the kinds of bus whose publish paths differ.
func busKinds(t *testing.T) map[string]func() *event.Bus[int] {
	return map[string]func() *event.Bus[int]{
		"async":   func() *event.Bus[int] { return newBus[int](t) },
		"sync":    func() *event.Bus[int] { return newBus[int](t, event.WithSync()) },
		"durable": func() *event.Bus[int] { return newStoreBus[int](t, openSQLite(t)) },
	}
}
