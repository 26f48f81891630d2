package event_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ncore-io/event"
)

func TestNewRejectsInvalidOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  event.Option
		want string // must appear in the error: names the bad option
	}{
		{"negative buffer", event.WithBufferSize(-1), "buffer size"},
		{"zero workers", event.WithWorkers(0), "workers"},
		{"negative workers", event.WithWorkers(-2), "workers"},
		{"negative timeout", event.WithTimeout(-time.Second), "timeout"},
		{"negative retries", event.WithRetry(event.RetryPolicy{MaxRetries: -1}), "MaxRetries"},
		{"negative interval", event.WithRetry(event.RetryPolicy{InitialInterval: -time.Millisecond}), "interval"},
		{"negative max interval", event.WithRetry(event.RetryPolicy{MaxInterval: -time.Millisecond}), "interval"},
		{"shrinking multiplier", event.WithRetry(event.RetryPolicy{Multiplier: 0.5}), "Multiplier"},
		{"NaN multiplier", event.WithRetry(event.RetryPolicy{Multiplier: math.NaN()}), "Multiplier"},
		{"jitter above 1", event.WithRetry(event.RetryPolicy{Jitter: 1.5}), "Jitter"},
		{"NaN jitter", event.WithRetry(event.RetryPolicy{Jitter: math.NaN()}), "Jitter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := event.New[int](tc.opt)
			if err == nil {
				b.Close(context.Background())
				t.Fatalf("New accepted %s", tc.name)
			}
			if b != nil {
				t.Errorf("New returned a bus with error %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "event: new: ") {
				t.Errorf("error %q does not start with \"event: new: \" and name %q", err, tc.want)
			}
		})
	}
}

func TestSubscribeRejectsInvalidOptions(t *testing.T) {
	t.Parallel()
	b := newBus[int](t)
	h := func(context.Context, event.Event[int]) error { return nil }
	for _, tc := range []struct {
		name string
		opt  event.SubscribeOption
		want string
	}{
		{"negative timeout", event.Timeout(-time.Millisecond), "timeout"},
		{"negative concurrency", event.Concurrency(-1), "concurrency"},
		{"negative retries", event.Retry(event.RetryPolicy{MaxRetries: -1}), "MaxRetries"},
		{"shrinking multiplier", event.Retry(event.RetryPolicy{Multiplier: 0.9}), "Multiplier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := event.Subscribe(b, "a.b", h, event.Name("named"), tc.opt)
			if err == nil {
				s.Unsubscribe()
				t.Fatalf("Subscribe accepted %s", tc.name)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "named") {
				t.Errorf("error %q names neither %q nor the subscription", err, tc.want)
			}
		})
	}
	if n := len(b.Stats().Subscribers); n != 0 {
		t.Errorf("rejected subscriptions were registered: %v", b.Stats().Subscribers)
	}
}

// TestDefaults checks the documented defaults through behaviour: the queue
// holds DefaultBufferSize events beside the DefaultWorkers being handled,
// handlers are not retried and have no deadline.
func TestDefaults(t *testing.T) {
	t.Parallel()
	b := newBus[int](t, event.WithFailFast())
	gate := make(chan struct{})
	var entered, calls atomic.Int64
	var sawDeadline atomic.Bool
	subscribe(t, b, "work", func(ctx context.Context, ev event.Event[int]) error {
		calls.Add(1)
		if _, ok := ctx.Deadline(); ok {
			sawDeadline.Store(true)
		}
		if ev.Payload < 0 {
			return errors.New("fail once")
		}
		entered.Add(1)
		<-gate
		return nil
	})
	for i := range event.DefaultWorkers {
		publish(t, b, "work", i)
	}
	waitUntil(t, "every worker to be busy", func() bool { return entered.Load() == event.DefaultWorkers })
	accepted := 0
	for {
		err := b.Publish(context.Background(), "work", -1)
		if errors.Is(err, event.ErrQueueFull) {
			break
		}
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
		accepted++
		if accepted > 10*event.DefaultBufferSize {
			t.Fatal("queue never filled")
		}
	}
	close(gate)
	if accepted != event.DefaultBufferSize {
		t.Errorf("queue took %d events beside %d busy workers, want %d", accepted, event.DefaultWorkers, event.DefaultBufferSize)
	}
	closeBus(t, b)
	if got, want := calls.Load(), int64(event.DefaultWorkers+accepted); got != want {
		t.Errorf("handler called %d times, want %d (one per event: no retries by default)", got, want)
	}
	if sawDeadline.Load() {
		t.Error("handler context has a deadline by default")
	}
	if st := b.Stats(); st.Failed != uint64(accepted) || st.Retried != 0 {
		t.Errorf("Stats: Failed %d Retried %d, want %d and 0", st.Failed, st.Retried, accepted)
	}
}

func TestPublishWithCancelledContextPublishesNothing(t *testing.T) {
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
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := b.Publish(ctx, "a", 1, event.Aggregate("k"))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Publish with a cancelled context: %v, want context.Canceled", err)
			}
			closeBus(t, b)
			if calls.Load() != 0 {
				t.Errorf("handler ran %d times for an event that was not published", calls.Load())
			}
			if st := b.Stats(); st.Published != 0 || st.Delivered != 0 {
				t.Errorf("Stats count an unpublished event: %+v", st)
			}
		})
	}
}

// TestHandlerContext checks that an asynchronous handler sees the
// publisher's context values but not its cancellation or deadline, which
// belong to the publish call that has returned.
func TestHandlerContext(t *testing.T) {
	t.Parallel()
	type key struct{}
	b := newBus[int](t)
	cancelled := make(chan struct{})
	type seen struct {
		val            any
		err, cause     error
		hasDeadline    bool
		doneClosed     bool
		derivedExpires bool
	}
	got := make(chan seen, 1)
	subscribe(t, b, "a", func(ctx context.Context, _ event.Event[int]) error {
		<-cancelled
		s := seen{val: ctx.Value(key{}), err: ctx.Err(), cause: context.Cause(ctx)}
		_, s.hasDeadline = ctx.Deadline()
		select {
		case <-ctx.Done():
			s.doneClosed = true
		default:
		}
		// A context derived from the handler's works as usual.
		dctx, dcancel := context.WithTimeout(ctx, time.Millisecond)
		defer dcancel()
		select {
		case <-dctx.Done():
			s.derivedExpires = errors.Is(dctx.Err(), context.DeadlineExceeded)
		case <-time.After(waitTimeout):
		}
		got <- s
		return nil
	})
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), key{}, "trace-1"), time.Hour)
	if err := b.Publish(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	close(cancelled)
	s := recv(t, got, "the handler")
	if s.val != "trace-1" {
		t.Errorf("handler context value = %v, want the publisher's %q", s.val, "trace-1")
	}
	if s.err != nil || s.cause != nil || s.doneClosed {
		t.Errorf("handler context cancelled with the publisher's: Err %v, Cause %v, Done closed %v", s.err, s.cause, s.doneClosed)
	}
	if s.hasDeadline {
		t.Error("handler context has the publisher's deadline")
	}
	if !s.derivedExpires {
		t.Error("a timeout derived from the handler context did not expire")
	}
}

// v7Millis returns the Unix milliseconds in a UUIDv7.
func v7Millis(id uuid.UUID) int64 {
	var b [8]byte
	copy(b[2:], id[:6])
	return int64(binary.BigEndian.Uint64(b[:]))
}

// TestEventIDs checks that IDs are UUIDv7, carry the publish time, and are
// unique and increasing in each publisher even with many publishing at once.
func TestEventIDs(t *testing.T) {
	t.Parallel()
	const goroutines, perG = 8, 2000
	b := newBus[[2]int](t, event.WithSync())
	ids := make([][]uuid.UUID, goroutines)
	for g := range ids {
		ids[g] = make([]uuid.UUID, perG)
	}
	subscribe(t, b, "id", func(_ context.Context, ev event.Event[[2]int]) error {
		ids[ev.Payload[0]][ev.Payload[1]] = ev.ID
		// An ID never predates its event; it may run ahead when more
		// than 65536 IDs are made in one millisecond.
		if v7Millis(ev.ID) < ev.Time.UnixMilli() {
			t.Errorf("ID %s has time %d ms, before its event's %d", ev.ID, v7Millis(ev.ID), ev.Time.UnixMilli())
		}
		return nil
	})
	start := time.Now()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				if err := b.Publish(context.Background(), "id", [2]int{g, i}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	end := time.Now()
	seen := make(map[uuid.UUID]bool, goroutines*perG)
	for g := range ids {
		for i, id := range ids[g] {
			if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
				t.Fatalf("ID %s is version %d variant %v, want 7 RFC4122", id, id.Version(), id.Variant())
			}
			if seen[id] {
				t.Fatalf("duplicate ID %s", id)
			}
			seen[id] = true
			if i > 0 && bytes.Compare(ids[g][i-1][:], id[:]) >= 0 {
				t.Fatalf("IDs not increasing in one publisher: %s then %s", ids[g][i-1], id)
			}
			// A second either side: IDs carry the bus's clock, which sees a
			// step of the wall clock (a VM's clock being corrected) up to a
			// second late.
			if ms := v7Millis(id); ms < start.UnixMilli()-1000 || ms > end.UnixMilli()+1000 {
				t.Fatalf("ID %s has time %v, outside the test's [%v, %v]", id, time.UnixMilli(ms), start, end)
			}
		}
	}
}

// TestEventIDIgnoresImportedTime checks that an event imported with a time
// of its own does not move the clock of the IDs made after it: an ID says
// when it was made.
func TestEventIDIgnoresImportedTime(t *testing.T) {
	t.Parallel()
	b := newBus[int](t, event.WithSync())
	var got record[event.Event[int]]
	subscribe(t, b, "a", func(_ context.Context, ev event.Event[int]) error { got.add(ev); return nil })
	future := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	publish(t, b, "a", 1, event.EventTime(future))
	before := time.Now()
	publish(t, b, "a", 2)
	evs := got.get()
	if !evs[0].Time.Equal(future) {
		t.Errorf("imported event's Time = %v, want %v", evs[0].Time, future)
	}
	for _, ev := range evs {
		if ms := v7Millis(ev.ID); ms > time.Now().UnixMilli()+1000 {
			t.Errorf("event %d has an ID from %v, in the future", ev.Payload, time.UnixMilli(ms).UTC())
		}
	}
	if ms := v7Millis(evs[1].ID); ms < before.UnixMilli()-1000 {
		t.Errorf("ID time %v is far before the publish at %v", time.UnixMilli(ms), before)
	}
}

func TestEnvelope(t *testing.T) {
	t.Parallel()
	b := newBus[string](t, event.WithSync())
	var got record[event.Event[string]]
	subscribe(t, b, "user.>", func(_ context.Context, ev event.Event[string]) error { got.add(ev); return nil })

	before := time.Now()
	publish(t, b, "user.registered", "plain")
	after := time.Now()

	src := map[string]string{"tenant": "t1", "region": "eu"}
	meta := event.Metadata(src)
	src["tenant"] = "changed after the option was made"
	src["late"] = "x"
	id := uuid.MustParse("0190a0b0-c0d0-7000-8000-000000000001")
	corr := uuid.MustParse("0190a0b0-c0d0-7000-8000-000000000002")
	at := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	publish(t, b, "user.renamed", "full",
		event.Aggregate("user-42"), event.AsKind(event.KindIntegration), meta,
		event.Meta("trace", "abc"), event.EventID(id), event.EventTime(at), event.Correlation(corr))
	// The same option value reused: each event gets its own map.
	publish(t, b, "user.renamed", "reused", meta)

	evs := got.get()
	if len(evs) != 3 {
		t.Fatalf("got %d events, want 3", len(evs))
	}
	p := evs[0]
	if p.Topic != "user.registered" || p.Payload != "plain" || p.Kind != event.KindDomain {
		t.Errorf("plain event: topic %q payload %q kind %q, want user.registered, plain, domain", p.Topic, p.Payload, p.Kind)
	}
	if p.Time.Before(before.Add(-time.Second)) || p.Time.After(after.Add(time.Second)) {
		t.Errorf("plain event time %v not near publish (%v..%v)", p.Time, before, after)
	}
	if p.CorrelationID != p.ID || p.CausationID != (uuid.UUID{}) {
		t.Errorf("event published outside a handler: correlation %s causation %s, want its own ID %s and zero", p.CorrelationID, p.CausationID, p.ID)
	}
	if p.AggregateID != "" || p.Metadata != nil || p.Version != 0 || p.Position != 0 {
		t.Errorf("plain event has fields set: %+v", p)
	}

	f := evs[1]
	if f.ID != id || !f.Time.Equal(at) || f.CorrelationID != corr || f.Kind != event.KindIntegration || f.AggregateID != "user-42" {
		t.Errorf("options not applied: %+v", f)
	}
	wantMeta := map[string]string{"tenant": "t1", "region": "eu", "trace": "abc"}
	if !mapsEqual(f.Metadata, wantMeta) {
		t.Errorf("Metadata = %v, want %v (copied when the option was made)", f.Metadata, wantMeta)
	}
	r := evs[2]
	if !mapsEqual(r.Metadata, map[string]string{"tenant": "t1", "region": "eu"}) {
		t.Errorf("reused Metadata option gave %v", r.Metadata)
	}
	if r.ID == f.ID || r.ID == p.ID {
		t.Error("events share an ID")
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestKinds(t *testing.T) {
	t.Parallel()
	for _, k := range []event.Kind{event.KindDomain, event.KindSystem, event.KindIntegration, "custom"} {
		b := newBus[int](t, event.WithSync())
		var got event.Kind
		subscribe(t, b, "k", func(_ context.Context, ev event.Event[int]) error { got = ev.Kind; return nil })
		publish(t, b, "k", 0, event.AsKind(k))
		if got != k {
			t.Errorf("AsKind(%q) delivered kind %q", k, got)
		}
	}
	if event.KindDomain != "domain" || event.KindSystem != "system" || event.KindIntegration != "integration" {
		t.Errorf("kind values changed: %q %q %q", event.KindDomain, event.KindSystem, event.KindIntegration)
	}
}
