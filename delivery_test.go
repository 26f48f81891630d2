package event_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ncore-io/event"
)

// TestFanOutExactlyOnce checks that every event published before Close
// reaches every matching subscription exactly once, keyed or not, with
// several publishers and workers.
func TestFanOutExactlyOnce(t *testing.T) {
	t.Parallel()
	const subs, publishers, perPublisher = 3, 4, 2500
	const n = publishers * perPublisher
	b := newBus[int](t, event.WithWorkers(10), event.WithBufferSize(64))
	type seen struct {
		mu  sync.Mutex
		ids map[uuid.UUID]int // ID -> payload
		dup []uuid.UUID
	}
	got := make([]*seen, subs)
	for i := range got {
		s := &seen{ids: make(map[uuid.UUID]int, n)}
		got[i] = s
		subscribe(t, b, "fan.>", func(_ context.Context, ev event.Event[int]) error {
			if rand.IntN(8) == 0 {
				runtime.Gosched()
			}
			s.mu.Lock()
			if _, ok := s.ids[ev.ID]; ok {
				s.dup = append(s.dup, ev.ID)
			}
			s.ids[ev.ID] = ev.Payload
			s.mu.Unlock()
			return nil
		})
	}
	var published sync.Map // ID -> payload, as recorded by a sync subscription
	subscribe(t, b, "fan.>", func(_ context.Context, ev event.Event[int]) error {
		published.Store(ev.ID, ev.Payload)
		return nil
	}, event.Sync())
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range perPublisher {
				v := p*perPublisher + i
				var opts []event.PublishOption
				if v%2 == 0 {
					opts = append(opts, event.Aggregate(fmt.Sprint("k", v%50)))
				}
				if err := b.Publish(context.Background(), fmt.Sprint("fan.", v%3), v, opts...); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	closeBus(t, b)
	for i, s := range got {
		if len(s.dup) > 0 {
			t.Errorf("subscription %d got %d events twice, e.g. %s", i, len(s.dup), s.dup[0])
		}
		if len(s.ids) != n {
			t.Errorf("subscription %d got %d distinct events, want %d", i, len(s.ids), n)
		}
		missing := 0
		published.Range(func(id, v any) bool {
			if p, ok := s.ids[id.(uuid.UUID)]; !ok || p != v.(int) {
				missing++
			}
			return true
		})
		if missing > 0 {
			t.Errorf("subscription %d missed %d events", i, missing)
		}
	}
	if st := b.Stats(); st.Published != n || st.Delivered != (subs+1)*n || st.Processed != (subs+1)*n {
		t.Errorf("Stats Published %d Delivered %d Processed %d, want %d, %d, %d", st.Published, st.Delivered, st.Processed, n, (subs+1)*n, (subs+1)*n)
	}
}

// TestPerKeyOrder checks that events with one aggregate ID reach each
// subscription one at a time in publish order, with many workers, handlers
// of varying length and retries that hold the key.
func TestPerKeyOrder(t *testing.T) {
	t.Parallel()
	const publishers, keysPer, perKey = 4, 50, 60
	type msg struct {
		key string
		seq int
	}
	b := newBus[msg](t, event.WithWorkers(10), event.WithBufferSize(128),
		event.WithRetry(event.RetryPolicy{MaxRetries: 3, InitialInterval: time.Microsecond, Jitter: -1}))
	type checker struct {
		mu      sync.Mutex
		next    map[string]int
		running map[string]bool
		errs    []string
		handled atomic.Int64
	}
	check := func(c *checker, flaky bool) event.Handler[msg] {
		failed := sync.Map{} // events that failed once already
		return func(_ context.Context, ev event.Event[msg]) error {
			k := ev.Payload.key
			c.mu.Lock()
			if c.running[k] {
				c.errs = append(c.errs, fmt.Sprintf("key %s: event %d ran while another of the key was running", k, ev.Payload.seq))
			}
			c.running[k] = true
			if ev.Payload.seq != c.next[k] {
				c.errs = append(c.errs, fmt.Sprintf("key %s: got event %d, want %d", k, ev.Payload.seq, c.next[k]))
			}
			c.mu.Unlock()
			for range rand.IntN(4) {
				runtime.Gosched()
			}
			fail := false
			if flaky && ev.Payload.seq%7 == 3 {
				_, again := failed.LoadOrStore(ev.ID, true)
				fail = !again
			}
			c.mu.Lock()
			c.running[k] = false
			if !fail {
				c.next[k] = ev.Payload.seq + 1
			}
			c.mu.Unlock()
			if fail {
				return errors.New("transient")
			}
			c.handled.Add(1)
			return nil
		}
	}
	var checkers []*checker
	for i, flaky := range []bool{false, true} {
		c := &checker{next: map[string]int{}, running: map[string]bool{}}
		checkers = append(checkers, c)
		subscribe(t, b, "order.*", check(c, flaky), event.Name(fmt.Sprint("checker", i)))
	}
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			// Interleave this publisher's keys, so that each key's
			// events are spread out in the queue.
			for seq := range perKey {
				for k := range keysPer {
					key := fmt.Sprintf("p%d-k%d", p, k)
					err := b.Publish(context.Background(), "order."+fmt.Sprint(seq%2), msg{key, seq}, event.Aggregate(key))
					if err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	closeBus(t, b)
	for i, c := range checkers {
		for _, e := range c.errs[:min(len(c.errs), 10)] {
			t.Errorf("checker %d: %s", i, e)
		}
		if got, want := c.handled.Load(), int64(publishers*keysPer*perKey); got != want {
			t.Errorf("checker %d handled %d events, want %d", i, got, want)
		}
	}
}

// TestKeysRunInParallel proves that events of different keys are handled
// at the same time, and that an event parked behind its key's running one
// holds no worker: with two workers, an unkeyed event still gets one.
func TestKeysRunInParallel(t *testing.T) {
	t.Parallel()
	b := newBus[string](t, event.WithWorkers(2))
	entered := make(chan string, 8)
	release := make(chan struct{})
	subscribe(t, b, "p", func(_ context.Context, ev event.Event[string]) error {
		entered <- ev.Payload
		<-release
		return nil
	})
	publish(t, b, "p", "A1", event.Aggregate("A"))
	publish(t, b, "p", "B1", event.Aggregate("B"))
	in := map[string]bool{recv(t, entered, "a first handler"): true, recv(t, entered, "a second handler at the same time"): true}
	if !in["A1"] || !in["B1"] {
		t.Fatalf("handlers running together: %v, want A1 and B1", in)
	}
	close(release)
	closeBus(t, b)
}

func TestParkedEventHoldsNoWorker(t *testing.T) {
	t.Parallel()
	b := newBus[string](t, event.WithWorkers(2))
	entered := make(chan string, 8)
	release := make(chan struct{})
	subscribe(t, b, "p", func(_ context.Context, ev event.Event[string]) error {
		entered <- ev.Payload
		if ev.Payload == "A1" {
			<-release
		}
		return nil
	})
	publish(t, b, "p", "A1", event.Aggregate("A"))
	if got := recv(t, entered, "A1"); got != "A1" {
		t.Fatalf("first handler got %s", got)
	}
	publish(t, b, "p", "A2", event.Aggregate("A"))
	publish(t, b, "p", "C", event.Aggregate("C"))
	publish(t, b, "p", "D")
	// A2 must wait for A1, but C and D must not wait for A2.
	for _, want := range []string{"C", "D"} {
		if got := recv(t, entered, want); got != want {
			t.Fatalf("while A1 runs, handler got %s, want %s (A2 must wait for A1)", got, want)
		}
	}
	close(release)
	if got := recv(t, entered, "A2"); got != "A2" {
		t.Fatalf("after A1, handler got %s, want A2", got)
	}
	closeBus(t, b)
}

func TestRetry(t *testing.T) {
	t.Parallel()
	fast := event.RetryPolicy{InitialInterval: time.Microsecond, MaxInterval: time.Millisecond, Jitter: -1}
	with := func(n int) event.RetryPolicy { p := fast; p.MaxRetries = n; return p }
	for _, tc := range []struct {
		name         string
		busRetry     *event.RetryPolicy
		subRetry     *event.RetryPolicy
		succeedOn    int // attempt that succeeds; 0: none
		wantAttempts int
		wantOK       bool
	}{
		{"first try", nil, ptr(with(3)), 1, 1, true},
		{"third try", nil, ptr(with(3)), 3, 3, true},
		{"last try", nil, ptr(with(3)), 4, 4, true},
		{"exhausted", nil, ptr(with(2)), 0, 3, false},
		{"no retries", nil, nil, 2, 1, false},
		{"bus policy", ptr(with(2)), nil, 3, 3, true},
		{"subscription overrides bus", ptr(with(5)), ptr(with(1)), 3, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var dead record[event.DeadLetter]
			opts := []event.Option{event.WithDeadLetter(func(_ context.Context, dl event.DeadLetter) { dead.add(dl) })}
			if tc.busRetry != nil {
				opts = append(opts, event.WithRetry(*tc.busRetry))
			}
			b := newBus[int](t, opts...)
			var sopts []event.SubscribeOption
			if tc.subRetry != nil {
				sopts = append(sopts, event.Retry(*tc.subRetry))
			}
			var attempts atomic.Int64
			subscribe(t, b, "r", func(context.Context, event.Event[int]) error {
				if n := attempts.Add(1); int(n) != tc.succeedOn {
					return fmt.Errorf("attempt %d failed", n)
				}
				return nil
			}, append(sopts, event.Name("retrier"))...)
			publish(t, b, "r", 1)
			closeBus(t, b)
			if got := attempts.Load(); got != int64(tc.wantAttempts) {
				t.Errorf("handler called %d times, want %d", got, tc.wantAttempts)
			}
			st := b.Stats()
			if st.Retried != uint64(tc.wantAttempts-1) {
				t.Errorf("Stats.Retried = %d, want %d", st.Retried, tc.wantAttempts-1)
			}
			wantProcessed, wantFailed := uint64(0), uint64(1)
			if tc.wantOK {
				wantProcessed, wantFailed = 1, 0
			}
			if st.Processed != wantProcessed || st.Failed != wantFailed || st.DeadLettered != wantFailed {
				t.Errorf("Stats Processed %d Failed %d DeadLettered %d, want %d, %d, %d", st.Processed, st.Failed, st.DeadLettered, wantProcessed, wantFailed, wantFailed)
			}
			dls := dead.get()
			if tc.wantOK {
				if len(dls) != 0 {
					t.Errorf("dead letters for a success: %+v", dls)
				}
				return
			}
			if len(dls) != 1 {
				t.Fatalf("got %d dead letters, want 1", len(dls))
			}
			dl := dls[0]
			if dl.Subscription != "retrier" || dl.Attempts != tc.wantAttempts || dl.Event.Payload != 1 || dl.Event.Topic != "r" {
				t.Errorf("dead letter %+v, want subscription retrier, %d attempts, payload 1 on r", dl, tc.wantAttempts)
			}
			if want := fmt.Sprintf("attempt %d failed", tc.wantAttempts); dl.Err == nil || dl.Err.Error() != want {
				t.Errorf("dead letter error %v, want the last attempt's %q", dl.Err, want)
			}
			if dl.Time.IsZero() || dl.Event.ID == (uuid.UUID{}) {
				t.Errorf("dead letter lacks its time or event ID: %+v", dl)
			}
		})
	}
}

func ptr[V any](v V) *V { return &v }

// TestRetryWaits checks that retries wait the backoff: with a 20ms initial
// interval and two retries the delivery cannot end in less than 20+40ms.
func TestRetryWaits(t *testing.T) {
	t.Parallel()
	b := newBus[int](t, event.WithSync())
	var times record[time.Time]
	subscribe(t, b, "r", func(context.Context, event.Event[int]) error {
		times.add(time.Now())
		return errors.New("no")
	}, event.Retry(event.RetryPolicy{MaxRetries: 2, InitialInterval: 20 * time.Millisecond, Multiplier: 2, Jitter: -1}))
	publish(t, b, "r", 1)
	ts := times.get()
	if len(ts) != 3 {
		t.Fatalf("%d attempts, want 3", len(ts))
	}
	if d := ts[1].Sub(ts[0]); d < 20*time.Millisecond {
		t.Errorf("first retry after %v, want at least 20ms", d)
	}
	if d := ts[2].Sub(ts[1]); d < 40*time.Millisecond {
		t.Errorf("second retry after %v, want at least 40ms (doubled)", d)
	}
}

var errPanicValue = errors.New("panicked with an error")

func TestPanicIsRecoveredRetriedAndDeadLettered(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		value any
	}{
		{"string", "boom"},
		{"error", errPanicValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var dead record[event.DeadLetter]
			b := newBus[int](t, event.WithDeadLetter(func(_ context.Context, dl event.DeadLetter) { dead.add(dl) }),
				event.WithRetry(event.RetryPolicy{MaxRetries: 2, InitialInterval: time.Microsecond, Jitter: -1}))
			var attempts atomic.Int64
			subscribe(t, b, "p", func(context.Context, event.Event[int]) error {
				attempts.Add(1)
				panicInHandler(tc.value)
				return nil
			})
			var after atomic.Int64
			subscribe(t, b, "p", func(context.Context, event.Event[int]) error { after.Add(1); return nil })
			publish(t, b, "p", 1)
			publish(t, b, "p", 2)
			closeBus(t, b)
			if attempts.Load() != 6 || after.Load() != 2 {
				t.Errorf("panicking handler called %d times (want 6), other handler %d (want 2)", attempts.Load(), after.Load())
			}
			dls := dead.get()
			if len(dls) != 2 {
				t.Fatalf("%d dead letters, want 2", len(dls))
			}
			var pe *event.PanicError
			if !errors.As(dls[0].Err, &pe) {
				t.Fatalf("dead letter error %T %v, want a *PanicError", dls[0].Err, dls[0].Err)
			}
			if pe.Value != tc.value || dls[0].Attempts != 3 {
				t.Errorf("PanicError.Value %v after %d attempts, want %v after 3", pe.Value, dls[0].Attempts, tc.value)
			}
			if !strings.Contains(string(pe.Stack), "panicInHandler") {
				t.Errorf("PanicError.Stack does not show the panicking function:\n%s", pe.Stack)
			}
			if !strings.Contains(pe.Error(), fmt.Sprint(tc.value)) {
				t.Errorf("PanicError.Error() = %q, want the value in it", pe.Error())
			}
			if isErr := errors.Is(dls[0].Err, errPanicValue); isErr != (tc.value == errPanicValue) {
				t.Errorf("errors.Is(err, panic value) = %v", isErr)
			}
			if st := b.Stats(); st.Failed != 2 || st.Retried != 4 || st.Processed != 2 {
				t.Errorf("Stats Failed %d Retried %d Processed %d, want 2, 4, 2", st.Failed, st.Retried, st.Processed)
			}
		})
	}
}

//go:noinline
func panicInHandler(v any) { panic(v) }

func TestTimeout(t *testing.T) {
	t.Parallel()
	const limit = 30 * time.Millisecond
	for _, tc := range []struct {
		name    string
		busOpt  []event.Option
		subOpt  []event.SubscribeOption
		returns error // what the handler returns once its context is done
	}{
		{"subscription timeout, handler returns nil", nil, []event.SubscribeOption{event.Timeout(limit)}, nil},
		{"bus timeout, handler returns ctx error", []event.Option{event.WithTimeout(limit)}, nil, context.DeadlineExceeded},
		{"handler returns its own error", []event.Option{event.WithTimeout(time.Hour)}, []event.SubscribeOption{event.Timeout(limit)}, errors.New("gave up")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var dead record[event.DeadLetter]
			b := newBus[int](t, append(tc.busOpt, event.WithDeadLetter(func(_ context.Context, dl event.DeadLetter) { dead.add(dl) }))...)
			var deadlineLeft record[time.Duration]
			subscribe(t, b, "slow", func(ctx context.Context, _ event.Event[int]) error {
				dl, ok := ctx.Deadline()
				if !ok {
					t.Error("handler context has no deadline")
					return nil
				}
				deadlineLeft.add(time.Until(dl))
				select {
				case <-ctx.Done():
				case <-time.After(waitTimeout):
					t.Error("handler context never expired")
				}
				return tc.returns
			}, tc.subOpt...)
			var fastOK atomic.Int64
			subscribe(t, b, "fast", func(ctx context.Context, _ event.Event[int]) error {
				if _, ok := ctx.Deadline(); !ok {
					return errors.New("no deadline")
				}
				fastOK.Add(1)
				return nil
			}, tc.subOpt...)
			publish(t, b, "slow", 1)
			publish(t, b, "fast", 2)
			closeBus(t, b)
			if left := deadlineLeft.get(); len(left) != 1 || left[0] > limit || left[0] <= 0 {
				t.Errorf("handler deadline was %v away, want within %v", left, limit)
			}
			dls := dead.get()
			if len(dls) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dls))
			}
			if !errors.Is(dls[0].Err, context.DeadlineExceeded) || dls[0].Attempts != 1 {
				t.Errorf("dead letter error %v after %d attempts, want DeadlineExceeded after 1", dls[0].Err, dls[0].Attempts)
			}
			if tc.returns != nil && !errors.Is(dls[0].Err, tc.returns) {
				t.Errorf("dead letter error %v lost the handler's %v", dls[0].Err, tc.returns)
			}
			if fastOK.Load() != 1 {
				t.Error("a handler finishing within its timeout did not succeed")
			}
			if st := b.Stats(); st.Failed != 1 || st.Processed != 1 {
				t.Errorf("Stats Failed %d Processed %d, want 1 and 1", st.Failed, st.Processed)
			}
		})
	}
}

// TestNestedPublishCausation checks that an event published with a
// handler's context records the handled event as its cause and keeps its
// correlation, through three generations, on asynchronous and synchronous
// buses.
func TestNestedPublishCausation(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"async", "sync", "sync subscription"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var opts []event.Option
			var sopts []event.SubscribeOption
			switch mode {
			case "sync":
				opts = append(opts, event.WithSync())
			case "sync subscription":
				sopts = append(sopts, event.Sync())
			}
			b := newBus[int](t, opts...)
			var got record[event.Event[int]]
			subscribe(t, b, "gen.*", func(ctx context.Context, ev event.Event[int]) error {
				got.add(ev)
				if ev.Payload < 2 {
					return b.Publish(ctx, fmt.Sprint("gen.", ev.Payload+1), ev.Payload+1)
				}
				return nil
			}, sopts...)
			publish(t, b, "gen.0", 0)
			corr := uuid.MustParse("0190a0b0-c0d0-7000-8000-00000000c0de")
			publish(t, b, "gen.0", 10, event.Correlation(corr))
			closeBus(t, b)
			byPayload := map[int]event.Event[int]{}
			for _, ev := range got.get() {
				byPayload[ev.Payload] = ev
			}
			if len(byPayload) != 4 {
				t.Fatalf("got events %v, want payloads 0, 1, 2, 10", byPayload)
			}
			root, child, grandchild := byPayload[0], byPayload[1], byPayload[2]
			if root.CorrelationID != root.ID || root.CausationID != (uuid.UUID{}) {
				t.Errorf("root: correlation %s causation %s, want its ID %s and zero", root.CorrelationID, root.CausationID, root.ID)
			}
			if child.CausationID != root.ID || child.CorrelationID != root.ID {
				t.Errorf("child: causation %s correlation %s, want both the root's ID %s", child.CausationID, child.CorrelationID, root.ID)
			}
			if grandchild.CausationID != child.ID || grandchild.CorrelationID != root.ID {
				t.Errorf("grandchild: causation %s correlation %s, want %s and %s", grandchild.CausationID, grandchild.CorrelationID, child.ID, root.ID)
			}
			if e := byPayload[10]; e.CorrelationID != corr {
				t.Errorf("explicit correlation: %s, want %s", e.CorrelationID, corr)
			}
		})
	}
}

// TestNestedPublishNeverBlocks checks that handlers publishing follow-ups
// into a full queue cannot deadlock the bus, even with fail-fast, and that
// every follow-up is delivered, in order per key.
func TestNestedPublishNeverBlocks(t *testing.T) {
	t.Parallel()
	const roots, followUps = 20, 30
	for _, tc := range []struct {
		name string
		opts []event.Option
	}{
		{"one worker", []event.Option{event.WithBufferSize(1), event.WithWorkers(1)}},
		{"unbuffered", []event.Option{event.WithBufferSize(0), event.WithWorkers(2)}},
		{"fail fast", []event.Option{event.WithBufferSize(1), event.WithWorkers(2), event.WithFailFast()}},
		{"sync", []event.Option{event.WithSync()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBus[[2]int](t, tc.opts...)
			subscribe(t, b, "root", func(ctx context.Context, ev event.Event[[2]int]) error {
				for i := range followUps {
					var opts []event.PublishOption
					if i%2 == 0 {
						opts = append(opts, event.Aggregate(fmt.Sprint("root", ev.Payload[0])))
					}
					if err := b.Publish(ctx, "follow", [2]int{ev.Payload[0], i}, opts...); err != nil {
						t.Errorf("nested Publish: %v", err)
					}
				}
				return nil
			})
			var mu sync.Mutex
			last := map[int]int{}
			var n atomic.Int64
			subscribe(t, b, "follow", func(_ context.Context, ev event.Event[[2]int]) error {
				if ev.AggregateID != "" {
					mu.Lock()
					if prev, ok := last[ev.Payload[0]]; ok && prev >= ev.Payload[1] {
						t.Errorf("root %d: follow-up %d after %d", ev.Payload[0], ev.Payload[1], prev)
					}
					last[ev.Payload[0]] = ev.Payload[1]
					mu.Unlock()
				}
				n.Add(1)
				return nil
			})
			for i := range roots {
				// With fail-fast, the test itself waits for room.
				waitUntil(t, "room for a root event", func() bool {
					err := b.Publish(context.Background(), "root", [2]int{i, 0})
					if err != nil && !errors.Is(err, event.ErrQueueFull) {
						t.Fatalf("Publish: %v", err)
					}
					return err == nil
				})
			}
			closeBus(t, b)
			if n.Load() != roots*followUps {
				t.Errorf("%d follow-ups delivered, want %d", n.Load(), roots*followUps)
			}
			if st := b.Stats(); st.Published != roots*(followUps+1) || st.QueueDepth != 0 {
				t.Errorf("Stats Published %d QueueDepth %d, want %d and 0", st.Published, st.QueueDepth, roots*(followUps+1))
			}
		})
	}
}

// fillQueue returns a bus with one worker held in a handler and a full
// queue of one, and the function that lets the handler go.
func fillQueue(t *testing.T, handled *record[int], opts ...event.Option) (*event.Bus[int], func()) {
	t.Helper()
	b := newBus[int](t, append([]event.Option{event.WithBufferSize(1), event.WithWorkers(1)}, opts...)...)
	entered := make(chan struct{}, 1)
	gate := make(chan struct{})
	subscribe(t, b, "q", func(_ context.Context, ev event.Event[int]) error {
		if ev.Payload == 1 {
			entered <- struct{}{}
			<-gate
		}
		handled.add(ev.Payload)
		return nil
	})
	publish(t, b, "q", 1, event.Aggregate("k"))
	recv(t, entered, "the first handler")
	publish(t, b, "q", 2, event.Aggregate("k")) // fills the queue
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return b, release
}

// TestBackpressureBlocks checks that Publish on a full queue waits until its
// context is done, returns the context's error, and neither delivers nor
// counts the event; a later event of the same key is not held up by the
// one that failed.
func TestBackpressureBlocks(t *testing.T) {
	t.Parallel()
	var handled record[int]
	b, release := fillQueue(t, &handled)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := b.Publish(ctx, "q", 3, event.Aggregate("k"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish on a full queue = %v, want DeadlineExceeded", err)
	}
	if st := b.Stats(); st.Published != 2 {
		t.Errorf("Stats.Published = %d after a publish that failed, want 2", st.Published)
	}
	release()
	publish(t, b, "q", 4, event.Aggregate("k"))
	closeBus(t, b)
	if got := handled.get(); fmt.Sprint(got) != "[1 2 4]" {
		t.Errorf("handled %v, want [1 2 4]", got)
	}
	if st := b.Stats(); st.Published != 3 || st.Processed != 3 || st.Delivered != 3 {
		t.Errorf("Stats Published %d Processed %d Delivered %d, want 3 each", st.Published, st.Processed, st.Delivered)
	}
}

func TestBackpressureFailFast(t *testing.T) {
	t.Parallel()
	var handled record[int]
	b, release := fillQueue(t, &handled, event.WithFailFast())
	var syncCalls atomic.Int64
	subscribe(t, b, "q", func(context.Context, event.Event[int]) error { syncCalls.Add(1); return nil }, event.Sync())
	for _, key := range []string{"k", "other", ""} {
		var opts []event.PublishOption
		if key != "" {
			opts = append(opts, event.Aggregate(key))
		}
		if err := b.Publish(context.Background(), "q", 3, opts...); !errors.Is(err, event.ErrQueueFull) {
			t.Fatalf("Publish (key %q) on a full queue with fail-fast = %v, want ErrQueueFull", key, err)
		}
	}
	if syncCalls.Load() != 0 {
		t.Errorf("a synchronous handler ran %d times for events the queue refused", syncCalls.Load())
	}
	release()
	waitUntil(t, "room in the queue", func() bool { return handled.len() == 2 })
	publish(t, b, "q", 4, event.Aggregate("k"))
	closeBus(t, b)
	if got := handled.get(); fmt.Sprint(got) != "[1 2 4]" {
		t.Errorf("handled %v, want [1 2 4]", got)
	}
	if st := b.Stats(); st.Published != 3 || syncCalls.Load() != 1 {
		t.Errorf("Stats.Published = %d and %d synchronous calls, want 3 and 1: refused events are not published", st.Published, syncCalls.Load())
	}
}

// TestUnbufferedPublishWaitsForAFreeWorker checks WithBufferSize(0):
// Publish returns once a worker is free to take the event, and waits (until
// its context is done) while none is.
func TestUnbufferedPublishWaitsForAFreeWorker(t *testing.T) {
	t.Parallel()
	var handled record[int]
	b := newBus[int](t, event.WithBufferSize(0), event.WithWorkers(1))
	entered := make(chan struct{}, 1)
	gate := make(chan struct{})
	subscribe(t, b, "q", func(_ context.Context, ev event.Event[int]) error {
		if ev.Payload == 1 {
			entered <- struct{}{}
			<-gate
		}
		handled.add(ev.Payload)
		return nil
	})
	publish(t, b, "q", 1)
	recv(t, entered, "the first handler")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := b.Publish(ctx, "q", 2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish while the only worker is busy = %v, want DeadlineExceeded", err)
	}
	if st := b.Stats(); st.QueueDepth != 0 {
		t.Errorf("Stats.QueueDepth = %d after the refused event, want 0", st.QueueDepth)
	}
	done := make(chan error, 1)
	go func() { done <- b.Publish(context.Background(), "q", 3) }()
	close(gate)
	if err := recv(t, done, "Publish once the worker is free"); err != nil {
		t.Fatalf("Publish once the worker is free: %v", err)
	}
	closeBus(t, b)
	if got := handled.get(); fmt.Sprint(got) != "[1 3]" {
		t.Errorf("handled %v, want [1 3]", got)
	}
}

// TestSlowHandlersGetEveryWorker checks that events queued behind running
// handlers wake the idle workers: each of n events whose handler waits for
// all n to be running at once must get a worker of its own.
func TestSlowHandlersGetEveryWorker(t *testing.T) {
	t.Parallel()
	const n = 4
	b := newBus[int](t, event.WithWorkers(n))
	var running atomic.Int32
	all := make(chan struct{})
	subscribe(t, b, "q", func(ctx context.Context, ev event.Event[int]) error {
		if running.Add(1) == n {
			close(all)
		}
		select {
		case <-all:
		case <-ctx.Done():
		}
		return nil
	})
	for i := range n {
		publish(t, b, "q", i)
	}
	recv(t, all, fmt.Sprintf("%d handlers running at once", n))
	closeBus(t, b)
}

// TestSyncMode checks that with WithSync every handler, retries included,
// runs in the publisher's goroutine before Publish returns.
func TestSyncMode(t *testing.T) {
	t.Parallel()
	type key struct{}
	b := newBus[int](t, event.WithSync(), event.WithRetry(event.RetryPolicy{MaxRetries: 1, InitialInterval: time.Microsecond}))
	var steps []string // no lock: a handler on another goroutine is a data race
	var where []string
	subscribe(t, b, "s", func(ctx context.Context, ev event.Event[int]) error {
		where = append(where, goid())
		steps = append(steps, fmt.Sprint("handler ", ev.Payload, " ", ctx.Value(key{})))
		if len(steps) == 1 {
			return errors.New("retry me")
		}
		return nil
	})
	ctx := context.WithValue(context.Background(), key{}, "marker")
	if err := b.Publish(ctx, "s", 1); err != nil {
		t.Fatal(err)
	}
	steps = append(steps, "after publish")
	me := goid()
	for _, g := range where {
		if g != me {
			t.Errorf("handler ran on goroutine %s, publisher is %s", g, me)
		}
	}
	want := "[handler 1 marker handler 1 marker after publish]"
	if fmt.Sprint(steps) != want {
		t.Errorf("steps %q, want %s", steps, want)
	}
	if st := b.Stats(); st.Processed != 1 || st.Retried != 1 {
		t.Errorf("Stats Processed %d Retried %d, want 1 and 1", st.Processed, st.Retried)
	}
}

// TestSyncSubscription checks that Sync() runs one subscription in the
// publisher's goroutine while the bus's others stay on workers, and that a
// synchronous handler sees the publisher's cancellation.
func TestSyncSubscription(t *testing.T) {
	t.Parallel()
	b := newBus[int](t)
	me := goid()
	var syncG string
	var syncDone bool
	asyncG := make(chan string, 1)
	subscribe(t, b, "s", func(ctx context.Context, _ event.Event[int]) error {
		syncG = goid()
		_, hasDeadline := ctx.Deadline()
		syncDone = hasDeadline
		return nil
	}, event.Sync())
	subscribe(t, b, "s", func(context.Context, event.Event[int]) error { asyncG <- goid(); return nil })
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := b.Publish(ctx, "s", 1); err != nil {
		t.Fatal(err)
	}
	if syncG != me {
		t.Errorf("Sync() handler ran on goroutine %q, publisher is %s", syncG, me)
	}
	if !syncDone {
		t.Error("Sync() handler context lacks the publisher's deadline")
	}
	if g := recv(t, asyncG, "the async handler"); g == me {
		t.Error("async handler ran in the publisher's goroutine")
	}
}

// TestNestedPublishOutsideWorkers checks that a follow-up published with a
// handler's context from outside the workers (here by a synchronous
// subscription, in the publisher's goroutine) is delivered even when no
// worker is busy to notice it: with an unbuffered queue, an idle worker
// that was about to wait when the follow-up arrived used to sleep through
// it, stranding it and making Close wait forever. The race is narrow, so
// the test repeats it.
func TestNestedPublishOutsideWorkers(t *testing.T) {
	t.Parallel()
	rounds := 20000
	if testing.Short() {
		rounds = 2000
	}
	for _, buffer := range []int{0, 1} {
		b := newBus[int](t, event.WithBufferSize(buffer), event.WithWorkers(1))
		got := make(chan int, 1)
		subscribe(t, b, "root", func(ctx context.Context, ev event.Event[int]) error {
			return b.Publish(ctx, "follow", ev.Payload)
		}, event.Sync())
		subscribe(t, b, "follow", func(_ context.Context, ev event.Event[int]) error { got <- ev.Payload; return nil })
		for i := range rounds {
			publish(t, b, "root", i)
			select {
			case <-got:
			case <-time.After(waitTimeout):
				t.Fatalf("buffer %d: follow-up %d never delivered", buffer, i)
			}
		}
		closeBus(t, b)
	}
}

// TestConcurrencyCap checks that Concurrency(n) lets at most n handler
// calls of the subscription run at once, across all workers.
func TestConcurrencyCap(t *testing.T) {
	t.Parallel()
	const limit = 2
	b := newBus[int](t, event.WithWorkers(8))
	var running, peak atomic.Int64
	gate := make(chan struct{})
	subscribe(t, b, "c", func(_ context.Context, ev event.Event[int]) error {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if ev.Payload < limit {
			<-gate // hold the first ones until both run together
		}
		runtime.Gosched()
		return nil
	}, event.Concurrency(limit))
	for i := range 200 {
		publish(t, b, "c", i)
	}
	waitUntil(t, "two handler calls at once", func() bool { return running.Load() == limit })
	close(gate)
	closeBus(t, b)
	if p := peak.Load(); p != limit {
		t.Errorf("at most %d handler calls ran at once, want %d", p, limit)
	}
}

// A handler of one bus publishing to another is an ordinary publisher
// there: it waits for room like any other, and its event still records the
// handled event as its cause.
func TestPublishFromAnotherBusHandler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	target, err := event.New[int](event.WithFailFast(), event.WithBufferSize(1), event.WithWorkers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close(ctx)
	busy, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var got []event.Event[int]
	event.Subscribe(target, ">", func(ctx context.Context, ev event.Event[int]) error {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		if ev.Payload == 0 {
			close(busy)
			<-release
		}
		return nil
	})
	// Occupy the only worker.
	if err := target.Publish(ctx, "t.block", 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-busy:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking handler never ran")
	}
	source := newBus[int](t, event.WithSync())
	var errs []error
	var cause event.Event[int]
	event.Subscribe(source, ">", func(ctx context.Context, ev event.Event[int]) error {
		cause = ev
		// The first fills the queue; the second finds no room and, as an
		// outside publisher on a fail-fast bus, is refused rather than
		// spilt over the bound.
		errs = append(errs, target.Publish(ctx, "t.one", 1), target.Publish(ctx, "t.two", 2))
		return nil
	})
	if err := source.Publish(ctx, "s.x", 9); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := target.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || !errors.Is(errs[1], event.ErrQueueFull) {
		t.Fatalf("publishes from another bus's handler: %v", errs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[1].Payload != 1 || got[1].CausationID != cause.ID || got[1].CorrelationID != cause.CorrelationID {
		t.Fatalf("target handled %+v; want the blocker and event 1 caused by %s", got, cause.ID)
	}
}
