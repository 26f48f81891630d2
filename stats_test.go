package event_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event"
)

// TestStatsAddUp checks that at rest the counters agree exactly with what
// the handlers saw, under a random mix of successes, errors and panics,
// with retries, keys, many workers and concurrent publishers.
func TestStatsAddUp(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	const n, maxRetries = 3000, 2
	// plan[i] is how many times handlers fail event i before succeeding;
	// more than maxRetries means it fails for good. Odd failures panic.
	plan := make([]int, n)
	for i := range plan {
		plan[i] = rng.IntN(maxRetries + 3)
	}
	var dead atomic.Int64
	b := newBus[int](t, event.WithWorkers(10), event.WithBufferSize(100),
		event.WithRetry(event.RetryPolicy{MaxRetries: maxRetries, InitialInterval: time.Microsecond, MaxInterval: 10 * time.Microsecond}),
		event.WithDeadLetter(func(context.Context, event.DeadLetter) { dead.Add(1) }))
	var attempts atomic.Int64
	handler := func() event.Handler[int] {
		var mu sync.Mutex
		tries := map[int]int{}
		return func(_ context.Context, ev event.Event[int]) error {
			attempts.Add(1)
			mu.Lock()
			tries[ev.Payload]++
			k := tries[ev.Payload]
			mu.Unlock()
			if k <= plan[ev.Payload] {
				if k%2 == 1 {
					panic(fmt.Sprint("planned panic ", k))
				}
				return fmt.Errorf("planned failure %d", k)
			}
			return nil
		}
	}
	// Two subscriptions see "stats.even", one sees "stats.odd" and
	// "stats.none" has none.
	subscribe(t, b, "stats.*", handler())
	subscribe(t, b, "stats.even", handler())
	subscribe(t, b, "stats.>", handler(), event.Sync(), event.Retry(event.RetryPolicy{}))

	want := struct{ deliveries, processed, failed, noSub int }{}
	topics := make([]string, n)
	for i := range n {
		switch i % 5 {
		case 0, 1:
			topics[i] = "stats.even"
		case 2, 3:
			topics[i] = "stats.odd"
		default:
			topics[i] = "other.none"
		}
	}
	// Expected outcomes: the async subscriptions retry up to maxRetries,
	// the sync one not at all.
	outcome := func(i, retries int) {
		want.deliveries++
		if plan[i] <= retries {
			want.processed++
		} else {
			want.failed++
		}
	}
	for i, topic := range topics {
		switch topic {
		case "stats.even":
			outcome(i, maxRetries)
			outcome(i, maxRetries)
			outcome(i, 0)
		case "stats.odd":
			outcome(i, maxRetries)
			outcome(i, 0)
		default:
			want.noSub++
		}
	}

	var wg sync.WaitGroup
	const publishers = 4
	for p := range publishers {
		wg.Go(func() {
			for i := p; i < n; i += publishers {
				var opts []event.PublishOption
				if i%3 == 0 {
					opts = append(opts, event.Aggregate(fmt.Sprint(i%17)))
				}
				if err := b.Publish(context.Background(), topics[i], i, opts...); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// At rest with the bus still open.
	waitUntil(t, "every delivery to end", func() bool {
		st := b.Stats()
		// Failed is counted before the dead-letter function runs.
		return st.Processed+st.Failed == uint64(want.deliveries) && st.DeadLettered == st.Failed
	})
	check := func(when string) {
		t.Helper()
		st := b.Stats()
		if st.Published != n || st.NoSubscriber != uint64(want.noSub) {
			t.Errorf("%s: Published %d NoSubscriber %d, want %d and %d", when, st.Published, st.NoSubscriber, n, want.noSub)
		}
		if st.Delivered != uint64(want.deliveries) || st.Delivered != st.Processed+st.Failed+st.Dropped {
			t.Errorf("%s: Delivered %d, want %d = Processed %d + Failed %d + Dropped %d", when, st.Delivered, want.deliveries, st.Processed, st.Failed, st.Dropped)
		}
		if st.Processed != uint64(want.processed) || st.Failed != uint64(want.failed) || st.Dropped != 0 {
			t.Errorf("%s: Processed %d Failed %d Dropped %d, want %d, %d, 0", when, st.Processed, st.Failed, st.Dropped, want.processed, want.failed)
		}
		if got := uint64(attempts.Load()) - st.Delivered; st.Retried != got {
			t.Errorf("%s: Retried %d, want handler calls - deliveries = %d", when, st.Retried, got)
		}
		if st.DeadLettered != st.Failed || dead.Load() != int64(st.Failed) {
			t.Errorf("%s: DeadLettered %d, dead-letter calls %d, want Failed %d", when, st.DeadLettered, dead.Load(), st.Failed)
		}
		if st.QueueDepth != 0 || st.InFlight != 0 {
			t.Errorf("%s: QueueDepth %d InFlight %d, want 0", when, st.QueueDepth, st.InFlight)
		}
		if want := map[string]int{"stats.*": 1, "stats.even": 1, "stats.>": 1}; !maps.Equal(st.Subscribers, want) {
			t.Errorf("%s: Subscribers %v, want %v", when, st.Subscribers, want)
		}
	}
	check("at rest")
	closeBus(t, b)
	check("after Close")
}

func TestStatsSubscribers(t *testing.T) {
	t.Parallel()
	b := newBus[int](t)
	h := func(context.Context, event.Event[int]) error { return nil }
	a1 := subscribe(t, b, "a.*", h)
	subscribe(t, b, "a.*", h, event.Name("other name, same pattern"))
	subscribe(t, b, "b", h)
	if got, want := b.Stats().Subscribers, map[string]int{"a.*": 2, "b": 1}; !maps.Equal(got, want) {
		t.Errorf("Subscribers %v, want %v", got, want)
	}
	a1.Unsubscribe()
	if got, want := b.Stats().Subscribers, map[string]int{"a.*": 1, "b": 1}; !maps.Equal(got, want) {
		t.Errorf("Subscribers after Unsubscribe %v, want %v", got, want)
	}
	// A snapshot is the caller's: changing it does not change the bus's.
	st := b.Stats()
	st.Subscribers["b"] = 99
	if b.Stats().Subscribers["b"] != 1 {
		t.Error("Stats shares its Subscribers map with the bus")
	}
}

// TestStatsWhileBusy checks the gauges while events wait and run.
func TestStatsWhileBusy(t *testing.T) {
	t.Parallel()
	b := newBus[int](t, event.WithWorkers(2), event.WithBufferSize(10))
	entered := make(chan struct{}, 5)
	gate := make(chan struct{})
	subscribe(t, b, "a", func(context.Context, event.Event[int]) error {
		entered <- struct{}{}
		<-gate
		return nil
	})
	for i := range 5 {
		publish(t, b, "a", i)
	}
	recv(t, entered, "a handler")
	recv(t, entered, "the other handler")
	st := b.Stats()
	if st.InFlight != 2 || st.QueueDepth != 3 || st.Delivered != 2 || st.Published != 5 {
		t.Errorf("while 2 run and 3 wait: InFlight %d QueueDepth %d Delivered %d Published %d", st.InFlight, st.QueueDepth, st.Delivered, st.Published)
	}
	close(gate)
	closeBus(t, b)
	if st := b.Stats(); st.InFlight != 0 || st.QueueDepth != 0 || st.Processed != 5 {
		t.Errorf("after Close: InFlight %d QueueDepth %d Processed %d", st.InFlight, st.QueueDepth, st.Processed)
	}
}

func TestStatsJSON(t *testing.T) {
	t.Parallel()
	st := event.Stats{
		Published: 1, NoSubscriber: 2, Delivered: 3, Processed: 4, Failed: 5, Retried: 6,
		DeadLettered: 7, Dropped: 8, QueueDepth: 9, InFlight: 10, Subscribers: map[string]int{"user.>": 11}, StoreErrors: 12,
		Takeovers: 13, Partitions: map[string]int{"workers": 14},
	}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"published": 1.0, "no_subscriber": 2.0, "delivered": 3.0, "processed": 4.0, "failed": 5.0,
		"retried": 6.0, "dead_lettered": 7.0, "dropped": 8.0, "queue_depth": 9.0, "in_flight": 10.0,
		"subscribers": map[string]any{"user.>": 11.0}, "store_errors": 12.0,
		"takeovers": 13.0, "partitions": map[string]any{"workers": 14.0},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("JSON %s\nwant keys and values %v", data, want)
	}
	if keys := slices.Sorted(maps.Keys(got)); len(keys) != len(want) {
		t.Errorf("JSON has keys %v", keys)
	}
	var back event.Stats
	if err := json.Unmarshal(data, &back); err != nil || fmt.Sprint(back) != fmt.Sprint(st) {
		t.Errorf("round trip gave %+v (%v), want %+v", back, err, st)
	}
}

// Events parked behind a running event of their aggregate still count as
// waiting.
func TestStatsCountParkedEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBus[int](t, event.WithWorkers(2))
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // runs before the bus's cleanup closes it
	event.Subscribe(b, ">", func(ctx context.Context, ev event.Event[int]) error {
		if ev.Payload == 0 {
			close(started)
			<-release
		}
		return nil
	})
	for i := range 4 {
		if err := b.Publish(ctx, "k.x", i, event.Aggregate("k")); err != nil {
			t.Fatal(err)
		}
	}
	<-started
	// The idle worker takes the other three off the queue and parks them.
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().QueueDepth != 3 || time.Now().Before(deadline.Add(-9500*time.Millisecond)) {
		if time.Now().After(deadline) {
			t.Fatalf("QueueDepth = %d with 3 events waiting behind their key", b.Stats().QueueDepth)
		}
		time.Sleep(time.Millisecond)
	}
	unblock()
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.QueueDepth != 0 || st.Processed != 4 {
		t.Fatalf("after Close: %+v", st)
	}
}
