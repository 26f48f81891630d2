package event_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event"
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
