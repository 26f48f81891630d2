package event_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

func TestPublishAfterClose(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []event.Option
	}{
		{"async", nil},
		{"sync", []event.Option{event.WithSync()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBus[int](t, tc.opts...)
			var calls atomic.Int64
			subscribe(t, b, "a", func(context.Context, event.Event[int]) error { calls.Add(1); return nil })
			// Close is idempotent and safe to call from several goroutines.
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					if err := b.Close(context.Background()); err != nil {
						t.Errorf("Close: %v", err)
					}
				})
			}
			wg.Wait()
			if err := b.Close(context.Background()); err != nil {
				t.Errorf("Close again: %v", err)
			}
			for _, topic := range []string{"a", "nobody.listens"} {
				if err := b.Publish(context.Background(), topic, 1); !errors.Is(err, event.ErrClosed) {
					t.Errorf("Publish(%q) after Close = %v, want ErrClosed", topic, err)
				}
			}
			if st := b.Stats(); calls.Load() != 0 || st.Published != 0 {
				t.Errorf("events published after Close: %d handler calls, Stats.Published %d", calls.Load(), st.Published)
			}
		})
	}
}

// TestCloseDrains checks that Close waits for queued and running events,
// and for the follow-ups their handlers publish meanwhile, while refusing
// new events from outside.
func TestCloseDrains(t *testing.T) {
	t.Parallel()
	const n = 60
	b := newBus[int](t, event.WithWorkers(3), event.WithBufferSize(n))
	gate := make(chan struct{})
	var handled, followed atomic.Int64
	subscribe(t, b, "work", func(ctx context.Context, ev event.Event[int]) error {
		<-gate
		if err := b.Publish(ctx, "follow", ev.Payload); err != nil {
			t.Errorf("follow-up publish while draining: %v", err)
		}
		handled.Add(1)
		return nil
	})
	subscribe(t, b, "follow", func(context.Context, event.Event[int]) error { followed.Add(1); return nil })
	for i := range n {
		var opts []event.PublishOption
		if i%3 == 0 {
			opts = append(opts, event.Aggregate(fmt.Sprint(i%4)))
		}
		publish(t, b, "work", i, opts...)
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close(context.Background()) }()
	waitUntil(t, "Publish to refuse new events", func() bool {
		err := b.Publish(context.Background(), "probe", -1) // no subscriber
		if err != nil && !errors.Is(err, event.ErrClosed) {
			t.Fatalf("Publish while closing: %v", err)
		}
		return err != nil
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while every handler was still blocked", err)
	default:
	}
	close(gate)
	if err := recv(t, closed, "Close"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if handled.Load() != n || followed.Load() != n {
		t.Errorf("after Close: %d events and %d follow-ups handled, want %d each", handled.Load(), followed.Load(), n)
	}
	st := b.Stats()
	if st.Published != 2*n+st.NoSubscriber || st.Processed != 2*n || st.InFlight != 0 || st.QueueDepth != 0 {
		t.Errorf("Stats after drain: %+v", st)
	}
}

// TestCloseGivesUp checks Close with a context that ends first: it returns
// the context's error, cancels running handlers' contexts, drops and
// dead-letters what is still queued, and the bus still stops once the
// handlers that ignore their context return.
func TestCloseGivesUp(t *testing.T) {
	t.Parallel()
	var dead record[event.DeadLetter]
	b := newBus[int](t, event.WithWorkers(2), event.WithBufferSize(10),
		event.WithDeadLetter(func(_ context.Context, dl event.DeadLetter) { dead.add(dl) }))
	entered := make(chan string, 2)
	type seen struct{ err, cause error }
	sawCancel := make(chan seen, 1)
	subscribe(t, b, "polite", func(ctx context.Context, ev event.Event[int]) error {
		entered <- "polite"
		select {
		case <-ctx.Done():
		case <-time.After(waitTimeout):
			t.Error("handler context not cancelled when Close gave up")
		}
		sawCancel <- seen{ctx.Err(), context.Cause(ctx)}
		return ctx.Err()
	})
	stubborn := make(chan struct{})
	subscribe(t, b, "stubborn", func(ctx context.Context, ev event.Event[int]) error {
		entered <- "stubborn"
		<-stubborn // ignores ctx
		return nil
	})
	publish(t, b, "polite", 0, event.Aggregate("k"))
	publish(t, b, "stubborn", 0)
	recv(t, entered, "a handler")
	recv(t, entered, "the other handler")
	// Both workers are busy: these stay queued.
	for i := 1; i <= 5; i++ {
		var opts []event.PublishOption
		if i%2 == 0 {
			opts = append(opts, event.Aggregate("k"))
		}
		publish(t, b, "polite", i, opts...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	err := b.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a context that expires = %v, want DeadlineExceeded", err)
	}
	s := recv(t, sawCancel, "the polite handler to see its context cancelled")
	if !errors.Is(s.err, context.Canceled) {
		t.Errorf("handler ctx.Err() = %v, want Canceled", s.err)
	}
	if err := b.Publish(context.Background(), "polite", 9); !errors.Is(err, event.ErrClosed) {
		t.Errorf("Publish after Close gave up = %v, want ErrClosed", err)
	}
	close(stubborn)
	// A later Close waits for the stubborn handler and the workers.
	closeBus(t, b)

	st := b.Stats()
	if st.Dropped != 5 || st.Failed != 1 || st.Processed != 1 {
		t.Errorf("Stats Dropped %d Failed %d Processed %d, want 5, 1, 1", st.Dropped, st.Failed, st.Processed)
	}
	if st.Delivered != st.Processed+st.Failed+st.Dropped {
		t.Errorf("Stats Delivered %d != Processed %d + Failed %d + Dropped %d", st.Delivered, st.Processed, st.Failed, st.Dropped)
	}
	if st.InFlight != 0 || st.QueueDepth != 0 || st.DeadLettered != 6 {
		t.Errorf("Stats InFlight %d QueueDepth %d DeadLettered %d, want 0, 0, 6", st.InFlight, st.QueueDepth, st.DeadLettered)
	}
	var dropped, failed int
	payloads := map[int]bool{}
	for _, dl := range dead.get() {
		switch {
		case errors.Is(dl.Err, event.ErrClosed) && dl.Attempts == 0:
			dropped++
			payloads[dl.Event.Payload.(int)] = true
		case errors.Is(dl.Err, context.Canceled) && dl.Attempts == 1:
			failed++
		default:
			t.Errorf("unexpected dead letter: %+v", dl)
		}
	}
	if dropped != 5 || failed != 1 || len(payloads) != 5 {
		t.Errorf("dead letters: %d dropped (%d distinct), %d failed; want 5 and 1", dropped, len(payloads), failed)
	}
}

// TestCloseStopsRetries checks that a delivery waiting to retry when Close
// gives up is dead-lettered at once, and that the retry that never ran is
// not counted.
func TestCloseStopsRetries(t *testing.T) {
	t.Parallel()
	var dead record[event.DeadLetter]
	b := newBus[int](t, event.WithDeadLetter(func(_ context.Context, dl event.DeadLetter) { dead.add(dl) }))
	errNo := errors.New("no")
	var attempts atomic.Int64
	subscribe(t, b, "r", func(context.Context, event.Event[int]) error {
		attempts.Add(1)
		return errNo
	}, event.Retry(event.RetryPolicy{MaxRetries: 3, InitialInterval: time.Hour}))
	publish(t, b, "r", 1)
	waitUntil(t, "the first attempt", func() bool { return attempts.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with a cancelled context = %v, want Canceled", err)
	}
	closeBus(t, b)
	if attempts.Load() != 1 {
		t.Errorf("handler called %d times, want 1", attempts.Load())
	}
	st := b.Stats()
	if st.Retried != 0 || st.Failed != 1 {
		t.Errorf("Stats Retried %d Failed %d, want 0 (no retry ran) and 1", st.Retried, st.Failed)
	}
	if dls := dead.get(); len(dls) != 1 || dls[0].Attempts != 1 || !errors.Is(dls[0].Err, errNo) {
		t.Errorf("dead letters %+v, want one after 1 attempt with the handler's error", dls)
	}
}

// TestCloseConcurrentWithPublish checks that while Close runs, each Publish
// either succeeds and its event is handled before Close returns, or
// returns ErrClosed: nothing is lost in between.
func TestCloseConcurrentWithPublish(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []event.Option
	}{
		{"small queue", []event.Option{event.WithBufferSize(2), event.WithWorkers(2)}},
		{"default", nil},
		{"sync", []event.Option{event.WithSync()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBus[int](t, tc.opts...)
			var handled atomic.Int64
			subscribe(t, b, "c", func(context.Context, event.Event[int]) error { handled.Add(1); return nil })
			const publishers = 8
			var accepted atomic.Int64
			var wg sync.WaitGroup
			for p := range publishers {
				wg.Go(func() {
					for i := 0; ; i++ {
						var opts []event.PublishOption
						if i%2 == 0 {
							opts = append(opts, event.Aggregate(fmt.Sprint(p)))
						}
						err := b.Publish(context.Background(), "c", i, opts...)
						if errors.Is(err, event.ErrClosed) {
							return
						}
						if err != nil {
							t.Errorf("Publish: %v", err)
							return
						}
						accepted.Add(1)
					}
				})
			}
			waitUntil(t, "events to flow", func() bool { return handled.Load() > 200 })
			closeBus(t, b)
			atClose := handled.Load()
			wg.Wait()
			if got, want := handled.Load(), accepted.Load(); got != want || atClose != want {
				t.Errorf("%d events accepted, %d handled when Close returned, %d in the end", want, atClose, got)
			}
			if st := b.Stats(); st.Published != uint64(accepted.Load()) || st.Processed != uint64(accepted.Load()) {
				t.Errorf("Stats Published %d Processed %d, want %d", st.Published, st.Processed, accepted.Load())
			}
		})
	}
}

// TestCloseWaitsForSyncPublish checks that on a synchronous bus Close waits
// for a Publish whose handlers are running, and that those handlers may
// still publish.
func TestCloseWaitsForSyncPublish(t *testing.T) {
	t.Parallel()
	b := newBus[int](t, event.WithSync())
	entered := make(chan struct{})
	gate := make(chan struct{})
	var followed atomic.Int64
	subscribe(t, b, "a", func(ctx context.Context, ev event.Event[int]) error {
		close(entered)
		<-gate
		return b.Publish(ctx, "b", 1)
	})
	subscribe(t, b, "b", func(context.Context, event.Event[int]) error { followed.Add(1); return nil })
	published := make(chan error, 1)
	go func() { published <- b.Publish(context.Background(), "a", 1) }()
	recv(t, entered, "the handler")
	closed := make(chan error, 1)
	go func() { closed <- b.Close(context.Background()) }()
	waitUntil(t, "Publish to refuse new events", func() bool {
		return errors.Is(b.Publish(context.Background(), "probe", 2), event.ErrClosed) // no subscriber
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while a synchronous handler ran", err)
	default:
	}
	close(gate)
	if err := recv(t, published, "Publish"); err != nil {
		t.Errorf("Publish: %v", err)
	}
	if err := recv(t, closed, "Close"); err != nil {
		t.Errorf("Close: %v", err)
	}
	if followed.Load() != 1 {
		t.Errorf("%d follow-ups handled, want 1", followed.Load())
	}
}

// Close lets the bus's durable subscriptions handle everything it appended
// before Close began, however many events that is: none is left for the
// next start.
func TestCloseWaitsForDurableCatchUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		for _, n := range []int{1, 10, 300} {
			s := open(t)
			bus := newStoreBus[int](t, s)
			var handled atomic.Int64
			subscribe(t, bus, "tick", func(context.Context, event.Event[int]) error {
				time.Sleep(100 * time.Microsecond) // slower than publishing: a backlog builds up
				handled.Add(1)
				return nil
			}, event.Durable("counter"))
			subscribe(t, bus, "other", func(context.Context, event.Event[int]) error { return nil }, event.Durable("elsewhere"))
			for i := range n {
				publish(t, bus, "tick", i)
			}
			closeBus(t, bus)
			if got := handled.Load(); got != int64(n) {
				t.Fatalf("%d events published before Close: %d handled by the durable subscription", n, got)
			}
			// The checkpoint says so too: a new bus has nothing left to do.
			again := newStoreBus[int](t, s)
			var redone atomic.Int64
			subscribe(t, again, "tick", func(context.Context, event.Event[int]) error { redone.Add(1); return nil }, event.Durable("counter"))
			publish(t, again, "tick", -1)
			closeBus(t, again)
			if got := redone.Load(); got != 1 {
				t.Fatalf("after a clean Close, the next start handled %d events, want only the new one", got)
			}
		}
	})
}

// A durable handler that ignores its context cannot hold Close past its
// deadline. Several buses, as the race it guards against is a coin toss.
func TestCloseDeadlineWithStuckDurableHandler(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	for range 4 {
		bus := newStoreBus[int](t, openSQLite(t))
		entered := make(chan struct{}, 1)
		subscribe(t, bus, "stuck", func(context.Context, event.Event[int]) error {
			entered <- struct{}{}
			<-release // ignores ctx
			return nil
		}, event.Durable("stuck"))
		publish(t, bus, "stuck", 1)
		recv(t, entered, "the handler to start")
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		closed := make(chan error, 1)
		go func() { closed <- bus.Close(ctx) }()
		select {
		case err := <-closed:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Close = %v, want the deadline's error", err)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("Close did not return within 3s of a 200ms deadline")
		}
		cancel()
		if st := bus.Stats(); st.InFlight != 1 {
			t.Errorf("InFlight %d after Close gave up, want the stuck delivery counted", st.InFlight)
		}
	}
}

// Unsubscribe stops the retries of an in-process subscription: the event
// goes to the dead letters, and Close does not wait for retries that would
// never end.
func TestUnsubscribeStopsRetries(t *testing.T) {
	t.Parallel()
	var dead record[event.DeadLetter]
	b := newBus[int](t, event.WithDeadLetter(func(_ context.Context, dl event.DeadLetter) { dead.add(dl) }))
	var attempts atomic.Int64
	sub := subscribe(t, b, "fails", func(context.Context, event.Event[int]) error {
		attempts.Add(1)
		return errors.New("always")
	}, event.Retry(event.RetryPolicy{MaxRetries: math.MaxInt32, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}))
	publish(t, b, "fails", 1)
	waitUntil(t, "a few attempts", func() bool { return attempts.Load() >= 3 })
	sub.Unsubscribe()
	waitUntil(t, "the dead letter", func() bool { return len(dead.get()) == 1 })
	n := attempts.Load()
	if dl := dead.get()[0]; !errors.Is(dl.Err, event.ErrUnsubscribed) || !strings.Contains(dl.Err.Error(), "always") || dl.Attempts < 3 {
		t.Errorf("dead letter %d attempts, error %v; want the attempts made, ErrUnsubscribed and the last error", dl.Attempts, dl.Err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := attempts.Load(); got != n {
		t.Errorf("%d attempts after Unsubscribe's dead letter, want none", got-n)
	}
	if st := b.Stats(); st.Delivered != st.Processed+st.Failed+st.Dropped || st.Dropped != 1 {
		t.Errorf("stats %+v: want the cut-off delivery counted as dropped", st)
	}
}

// Publishing again an event the store already has (a retry, a re-import)
// leaves nothing for Close to wait for: the durable subscription handled
// the event long before.
func TestCloseAfterRepublishOfStoredEvent(t *testing.T) {
	t.Parallel()
	bus := newStoreBus[int](t, openSQLite(t))
	var n atomic.Int32
	subscribe(t, bus, "t", func(context.Context, event.Event[int]) error { n.Add(1); return nil }, event.Durable("d"))
	id := uuid.New()
	publish(t, bus, "t", 1, event.EventID(id), event.EventTime(fixedTime))
	waitUntil(t, "the event handled", func() bool { return n.Load() == 1 })
	publish(t, bus, "t", 1, event.EventID(id), event.EventTime(fixedTime)) // the store keeps it once
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := n.Load(); got != 1 {
		t.Errorf("handled %d times, want once", got)
	}
}

// A durable Subscribe racing Close either fails with ErrClosed or is
// stopped by it: no runner outlives Close.
func TestCloseRacesDurableSubscribe(t *testing.T) {
	t.Parallel()
	s := openSQLite(t)
	for i := range 1000 {
		bus, err := event.New[int](event.WithStore(s), event.WithPollInterval(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := event.Subscribe(bus, "t", func(context.Context, event.Event[int]) error { return nil }, event.Durable(fmt.Sprint("d", i)))
			done <- err
		}()
		runtime.Gosched()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = bus.Close(ctx)
		cancel()
		if serr := <-done; serr != nil && !errors.Is(serr, event.ErrClosed) {
			t.Fatalf("iteration %d: Subscribe: %v", i, serr)
		}
		if err != nil {
			t.Fatalf("iteration %d: Close: %v", i, err)
		}
	}
}
