package event_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// A nil context is an error that says so, on every bus and every call that
// takes one, not a nil-pointer panic.
func TestNilContext(t *testing.T) {
	t.Parallel()
	for name, mk := range busKinds(t) {
		t.Run(name, func(t *testing.T) {
			b := mk()
			var nilCtx context.Context
			for call, err := range map[string]error{
				"Publish":      b.Publish(nilCtx, "a", 1),
				"PublishBatch": b.PublishBatch(nilCtx, []event.Message[int]{{Topic: "a"}}),
				"PublishTx":    b.PublishTx(nilCtx, struct{}{}, "a", 1),
				"Close":        b.Close(nilCtx),
			} {
				if !errors.Is(err, event.ErrNilContext) || !strings.Contains(err.Error(), "nil Context") {
					t.Errorf("%s(nil) = %v, want ErrNilContext", call, err)
				}
			}
			if st := b.Stats(); st.Published != 0 {
				t.Errorf("Published %d after nil-context calls", st.Published)
			}
		})
	}
}

// Every bus refuses an envelope that no store could keep, with a store or
// without, so that a program tested without a store does not meet the
// limits only in production.
func TestEnvelopeLimitsOnEveryBus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  event.PublishOption
		want string
	}{
		{"long aggregate ID", event.Aggregate(strings.Repeat("a", store.MaxAggregateIDLen+1)), "aggregate ID is 256 bytes"},
		{"aggregate ID not UTF-8", event.Aggregate("a\xff"), "not valid UTF-8"},
		{"NUL in metadata value", event.Meta("k", "v\x00"), "NUL"},
		{"NUL in metadata key", event.Meta("k\x00", "v"), "NUL"},
		{"reserved metadata prefix", event.Meta("event.correlation_id", "x"), "reserved prefix"},
		{"long kind", event.AsKind(event.Kind(strings.Repeat("k", store.MaxKindLen+1))), "kind is 65 bytes"},
		{"year 300000", event.EventTime(time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)), "outside the years 1 to 9999 UTC"},
		{"year 0", event.EventTime(time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)), "outside the years 1 to 9999 UTC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for name, mk := range busKinds(t) {
				b := mk()
				var calls atomic.Int64
				subscribe(t, b, "a", func(context.Context, event.Event[int]) error { calls.Add(1); return nil })
				err := b.Publish(t.Context(), "a", 1, tc.opt)
				if !errors.Is(err, event.ErrInvalidEvent) || !errors.Is(err, store.ErrInvalidRecord) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s bus: Publish = %v, want ErrInvalidEvent mentioning %q", name, err, tc.want)
				}
				closeBus(t, b)
				if st := b.Stats(); st.Published != 0 || calls.Load() != 0 {
					t.Errorf("%s bus: the refused event was published", name)
				}
			}
		})
	}
}

// The payload's size is the store's limit: a bus without a store never
// encodes payloads, and says so in its docs.
func TestPayloadSizeIsTheStoresLimit(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", store.DefaultMaxPayloadSize+1)
	mem := newBus[string](t)
	if err := mem.Publish(t.Context(), "a", big); err != nil {
		t.Errorf("bus without a store: %v", err)
	}
	stored := newStoreBus[string](t, openSQLite(t))
	if err := stored.Publish(t.Context(), "a", big); !errors.Is(err, event.ErrInvalidEvent) {
		t.Errorf("bus with a store: %v, want ErrInvalidEvent", err)
	}
}

// A batch is all or none: one invalid event, or one failed expectation,
// and nothing is stored or delivered.
func TestPublishBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		s := open(t)
		bus := newStoreBus[Registered](t, s)
		inproc := newSeen[Registered]()
		subscribe(t, bus, "user.>", inproc.handler)
		durable := newSeen[Registered]()
		subscribe(t, bus, "user.>", durable.handler, event.Durable("all"))
		msg := func(topic, agg string, n int, opts ...event.PublishOption) event.Message[Registered] {
			return event.Message[Registered]{Topic: topic, Payload: Registered{UserID: agg, N: n}, Options: append(opts, event.Aggregate(agg))}
		}
		if err := bus.PublishBatch(ctx, []event.Message[Registered]{
			msg("user.registered", "u-1", 1, event.ExpectVersion(0)),
			msg("user.renamed", "u-1", 2, event.ExpectVersion(1)),
			msg("user.registered", "u-2", 3),
		}); err != nil {
			t.Fatalf("PublishBatch: %v", err)
		}
		for _, tc := range []struct {
			name string
			msgs []event.Message[Registered]
			want error
		}{
			{"invalid topic", []event.Message[Registered]{msg("user.ok", "u-3", 4), msg("bad..topic", "u-3", 5)}, event.ErrInvalidTopic},
			{"stale expectation", []event.Message[Registered]{msg("user.ok", "u-3", 6), msg("user.renamed", "u-1", 7, event.ExpectVersion(1))}, store.ErrVersionConflict},
			{"inconsistent expectations", []event.Message[Registered]{msg("user.a", "u-4", 8, event.ExpectVersion(0)), msg("user.b", "u-4", 9, event.ExpectVersion(0))}, nil},
		} {
			err := bus.PublishBatch(ctx, tc.msgs)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("%s: PublishBatch = %v, want %v", tc.name, err, tc.want)
			}
		}
		durable.waitFor(t, "the batch", atLeast[Registered](3))
		closeBus(t, bus)
		var recs []store.Record
		for rec, err := range store.All(ctx, s, store.Query{}) {
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, rec)
		}
		if len(recs) != 3 {
			t.Fatalf("stored %d records, want only the good batch's 3", len(recs))
		}
		if recs[1].AggregateID != "u-1" || recs[1].Version != 2 {
			t.Errorf("second record %s v%d, want u-1 v2", recs[1].AggregateID, recs[1].Version)
		}
		for name, got := range map[string][]event.Event[Registered]{"in process": inproc.snapshot(), "durable": durable.snapshot()} {
			if len(got) != 3 {
				t.Errorf("%s: %d events delivered, want 3", name, len(got))
			}
		}
	})
}

// An event whose payload is a pointer reaches handlers of the value type
// (and the reverse) by one rule, in process and from the store.
func TestPointerPayloadRule(t *testing.T) {
	t.Parallel()
	bus := newStoreBus[any](t, openSQLite(t))
	inValue, inPtr := newSeen[Registered](), newSeen[*Registered]()
	durValue, durPtr := newSeen[Registered](), newSeen[*Registered]()
	subscribe(t, bus, "user.>", inValue.handler)
	subscribe(t, bus, "user.>", inPtr.handler)
	subscribe(t, bus, "user.>", durValue.handler, event.Durable("values"))
	subscribe(t, bus, "user.>", durPtr.handler, event.Durable("pointers"))
	publish[any](t, bus, "user.registered", &Registered{UserID: "pointer"})
	publish[any](t, bus, "user.registered", Registered{UserID: "value"})
	publish[any](t, bus, "user.registered", (*Registered)(nil)) // a nil pointer is nobody's value
	durValue.waitFor(t, "both", atLeast[Registered](2))
	durPtr.waitFor(t, "both", atLeast[*Registered](2))
	closeBus(t, bus)
	for name, got := range map[string][]string{
		"in-process value": userIDs(inValue.snapshot()), "durable value": userIDs(durValue.snapshot()),
		"in-process pointer": ptrUserIDs(inPtr.snapshot()), "durable pointer": ptrUserIDs(durPtr.snapshot()),
	} {
		slices.Sort(got) // in-process workers run unkeyed events in parallel
		if strings.Join(got, ",") != "pointer,value" {
			t.Errorf("%s handler got %v, want pointer,value", name, got)
		}
	}
}

func userIDs(evs []event.Event[Registered]) []string {
	var ids []string
	for _, ev := range evs {
		ids = append(ids, ev.Payload.UserID)
	}
	return ids
}

func ptrUserIDs(evs []event.Event[*Registered]) []string {
	var ids []string
	for _, ev := range evs {
		if ev.Payload != nil {
			ids = append(ids, ev.Payload.UserID)
		}
	}
	return ids
}

type notRegistered struct{ N int }

// A payload type published on an interface bus is learnt by the publish, so
// the bus's durable subscriptions decode it; another bus that never met the
// type dead-letters it with an error naming the type and the cure.
func TestPublishRegistersType(t *testing.T) {
	t.Parallel()
	s := openSQLite(t)
	bus := newStoreBus[any](t, s)
	got := newSeen[any]()
	subscribe(t, bus, ">", got.handler, event.Durable("any"))
	publish[any](t, bus, "thing", notRegistered{N: 7})
	evs := got.waitFor(t, "the event", atLeast[any](1))
	if p, ok := evs[0].Payload.(notRegistered); !ok || p.N != 7 {
		t.Fatalf("durable handler got %#v, want the notRegistered payload", evs[0].Payload)
	}
	closeBus(t, bus)

	var dead record[event.DeadLetter]
	other := newStoreBus[any](t, s, event.WithDeadLetter(func(_ context.Context, dl event.DeadLetter) { dead.add(dl) }))
	subscribe(t, other, ">", func(context.Context, event.Event[any]) error { return nil }, event.Durable("other"))
	waitUntil(t, "the dead letter", func() bool { return len(dead.get()) == 1 })
	err := dead.get()[0].Err
	if !errors.Is(err, event.ErrUnknownType) || !strings.Contains(err.Error(), "notRegistered") || !strings.Contains(err.Error(), "WithTypes") {
		t.Errorf("dead letter error %v, want ErrUnknownType naming the type and WithTypes", err)
	}
}

// uncertainStore stores the first append it is given and then reports,
// as a driver does when ctx ends during its commit, that it cannot tell.
type uncertainStore struct {
	store.Store
	done atomic.Bool
}

func (s *uncertainStore) Append(ctx context.Context, recs []store.Record, expect ...store.Expect) error {
	err := s.Store.Append(ctx, recs, expect...)
	if err == nil && s.done.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: %w", store.ErrMaybeStored, context.DeadlineExceeded)
	}
	return err
}

// A publish whose outcome the store cannot tell says so, with the event's
// ID; publishing again with that ID stores and delivers the event once.
func TestPublishMaybePublished(t *testing.T) {
	t.Parallel()
	inner := openSQLite(t)
	bus := newStoreBus[int](t, &uncertainStore{Store: inner})
	var inproc atomic.Int64
	subscribe(t, bus, "n", func(context.Context, event.Event[int]) error { inproc.Add(1); return nil })
	durable := newSeen[int]()
	subscribe(t, bus, "n", durable.handler, event.Durable("d"))
	err := bus.Publish(t.Context(), "n", 1)
	var maybe *event.MaybePublishedError
	if !errors.Is(err, event.ErrMaybePublished) || !errors.Is(err, store.ErrMaybeStored) ||
		!errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &maybe) || len(maybe.IDs) != 1 {
		t.Fatalf("Publish = %v, want a *MaybePublishedError", err)
	}
	if !strings.Contains(err.Error(), maybe.IDs[0].String()) {
		t.Errorf("error %q does not name the event", err)
	}
	if err := bus.Publish(t.Context(), "n", 1, maybe.RetryAs(0)); err != nil {
		t.Fatalf("retry with the same ID: %v", err)
	}
	durable.waitFor(t, "the event", atLeast[int](1))
	closeBus(t, bus)
	if n := len(durable.snapshot()); n != 1 || inproc.Load() != 1 {
		t.Errorf("durable handled %d, in-process %d; want the event once each", n, inproc.Load())
	}
	recs, _, err := inner.Read(t.Context(), store.Query{})
	if err != nil || len(recs) != 1 || recs[0].ID != maybe.IDs[0].String() {
		t.Fatalf("store holds %d records (%v), want the one event", len(recs), err)
	}
}

// The time limits are those of the stores, in UTC and to the microsecond,
// on every bus.
func TestEnvelopeTimeLimitsInUTC(t *testing.T) {
	t.Parallel()
	for name, tm := range map[string]time.Time{
		"year 10000 in UTC":        time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("w", -2*3600)),
		"before the first µs of 1": time.Time{}.Add(time.Nanosecond),
	} {
		for kind, mk := range busKinds(t) {
			if err := mk().Publish(t.Context(), "t", 1, event.EventTime(tm)); !errors.Is(err, event.ErrInvalidEvent) {
				t.Errorf("%s, %s bus: Publish = %v, want ErrInvalidEvent", name, kind, err)
			}
		}
	}
}
