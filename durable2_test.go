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
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// Rebuilding a read model by replay yields the state live processing built.
func TestReplayRebuildsReadModel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		bus := newStoreBus[Registered](t, open(t))
		type model struct {
			mu     sync.Mutex
			counts map[string]int
		}
		apply := func(m *model) event.Handler[Registered] {
			return func(ctx context.Context, ev event.Event[Registered]) error {
				m.mu.Lock()
				defer m.mu.Unlock()
				m.counts[ev.AggregateID] += ev.Payload.N
				return nil
			}
		}
		live := &model{counts: map[string]int{}}
		event.Subscribe(bus, "user.>", apply(live), event.Name("read-model"))
		for i := range 200 {
			agg := fmt.Sprintf("u-%d", i%5)
			if err := bus.Publish(ctx, "user.registered", Registered{N: i}, event.Aggregate(agg)); err != nil {
				t.Fatal(err)
			}
		}
		bus.Publish(ctx, "order.placed", Registered{N: 1000}) // not matched by the replay filter
		rebuilt := &model{counts: map[string]int{}}
		n, err := event.Replay(ctx, bus, store.Query{Topic: "user.>"}, apply(rebuilt))
		if err != nil || n != 200 {
			t.Fatalf("Replay = %d, %v; want 200, nil", n, err)
		}
		if err := bus.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(live.counts) != fmt.Sprint(rebuilt.counts) {
			t.Fatalf("rebuilt %v, live %v", rebuilt.counts, live.counts)
		}
	})
}

func TestReplayToSubscription(t *testing.T) {
	ctx := t.Context()
	s := openSQLite(t)
	bus := newStoreBus[Registered](t, s, event.WithSync())
	for i := range 10 {
		bus.Publish(ctx, "user.registered", Registered{N: i})
	}
	got := newSeen[Registered]()
	event.Subscribe(bus, "user.>", got.handler, event.Name("projector"))
	n, err := bus.ReplayTo(ctx, "projector", store.Query{Since: time.Now().Add(-time.Hour), Limit: 4})
	if err != nil || n != 4 {
		t.Fatalf("ReplayTo = %d, %v; want 4, nil", n, err)
	}
	if evs := got.snapshot(); len(evs) != 4 || evs[0].Payload.N != 0 || evs[3].Payload.N != 3 {
		t.Fatalf("replayed %v", evs)
	}
	if _, err := bus.ReplayTo(ctx, "nobody", store.Query{}); err == nil {
		t.Fatal("ReplayTo an unknown subscription succeeded")
	}
	if _, err := event.Replay(ctx, bus, store.Query{Topic: "user..x"}, got.handler); !errors.Is(err, event.ErrInvalidTopic) {
		t.Fatalf("Replay with a bad pattern: %v", err)
	}
}

func TestDeadLettersStoredAndRedriven(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		bus := newStoreBus[Registered](t, open(t), event.WithSync())
		var mu sync.Mutex
		broken := true
		var handled []int
		event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[Registered]) error {
			mu.Lock()
			defer mu.Unlock()
			if broken {
				return errors.New("mail server down")
			}
			handled = append(handled, ev.Payload.N)
			return nil
		}, event.Name("mailer"), event.Retry(event.RetryPolicy{MaxRetries: 1, InitialInterval: time.Millisecond}))
		for i := range 3 {
			bus.Publish(ctx, "user.registered", Registered{N: i})
		}
		dls, err := bus.DeadLetters(ctx, "mailer", 0)
		if err != nil || len(dls) != 3 {
			t.Fatalf("DeadLetters = %d, %v; want 3", len(dls), err)
		}
		if dls[0].Attempts != 2 || dls[0].Error != "mail server down" || dls[0].Subscription != "mailer" {
			t.Fatalf("dead letter %+v", dls[0])
		}
		if st := bus.Stats(); st.Failed != 3 || st.DeadLettered != 3 {
			t.Fatalf("stats %+v", st)
		}
		// Still broken: re-driving fails and keeps the dead letter.
		if err := bus.Redrive(ctx, "mailer", dls[0].Record.ID); err == nil {
			t.Fatal("Redrive succeeded while the handler fails")
		}
		mu.Lock()
		broken = false
		mu.Unlock()
		if err := bus.Redrive(ctx, "mailer", dls[0].Record.ID); err != nil {
			t.Fatal(err)
		}
		n, err := bus.RedriveAll(ctx, "mailer")
		if err != nil || n != 2 {
			t.Fatalf("RedriveAll = %d, %v", n, err)
		}
		if dls, _ := bus.DeadLetters(ctx, "mailer", 0); len(dls) != 0 {
			t.Fatalf("%d dead letters left after re-driving", len(dls))
		}
		if len(handled) != 3 {
			t.Fatalf("handled %v after re-driving", handled)
		}
		if err := bus.Redrive(ctx, "mailer", dls0ID(dls)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Redrive of a missing dead letter: %v", err)
		}
	})
}

func dls0ID(dls []store.DeadLetterRecord) string {
	if len(dls) > 0 {
		return dls[0].Record.ID
	}
	return "0190c6a8-0000-7000-8000-000000000000"
}

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

type Withdrawn struct{ Amount int }

func applyWithdrawals(a Account, ev event.Event[any]) Account {
	if p, ok := ev.Payload.(Withdrawn); ok {
		a.Balance -= p.Amount
	}
	return a.Apply(ev)
}

func TestEventSourcing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		bus := newStoreBus[any](t, open(t), event.WithTypes(Deposited{}, Withdrawn{}))
		publish := func(p any, v int64) error {
			return bus.Publish(ctx, "account.changed", p, event.Aggregate("acc-1"), event.ExpectVersion(v))
		}
		if err := publish(Deposited{100}, 0); err != nil {
			t.Fatal(err)
		}
		if err := publish(Withdrawn{30}, 1); err != nil {
			t.Fatal(err)
		}
		acc, v, err := event.Fold(ctx, bus, "acc-1", Account{}, applyWithdrawals)
		if err != nil || acc.Balance != 70 || v != 2 {
			t.Fatalf("Fold = %+v, %d, %v; want balance 70 at version 2", acc, v, err)
		}
		// Two writers decide on version 2; only the first wins.
		if err := publish(Withdrawn{50}, v); err != nil {
			t.Fatal(err)
		}
		err = publish(Withdrawn{50}, v)
		var vc *store.VersionConflictError
		if !errors.Is(err, store.ErrVersionConflict) || !errors.As(err, &vc) || vc.Actual != 3 {
			t.Fatalf("second writer: %v, want a version conflict at actual version 3", err)
		}
		evs, v, err := event.LoadAggregate[Withdrawn](ctx, bus, "acc-1")
		if err != nil || len(evs) != 2 || v != 3 {
			t.Fatalf("LoadAggregate = %d events, version %d, %v", len(evs), v, err)
		}
		if err := bus.Publish(ctx, "account.changed", Deposited{1}, event.ExpectVersion(3)); err == nil {
			t.Fatal("ExpectVersion without an aggregate accepted")
		}
	})
}

type Unregistered struct{ X int }

// A bus of an interface type decodes each stored payload into its own type;
// a payload of a type it does not know is dead-lettered, not dropped.
func TestInterfaceBusDecoding(t *testing.T) {
	ctx := t.Context()
	s := openSQLite(t)
	writer := newStoreBus[any](t, s)
	writer.Publish(ctx, "user.registered", Registered{UserID: "u-1"})
	writer.Publish(ctx, "odd.thing", Unregistered{X: 1})
	writer.Publish(ctx, "user.registered", &Registered{UserID: "u-2"})
	writer.Close(ctx)

	var mu sync.Mutex
	var dead []event.DeadLetter
	reader := newStoreBus[any](t, s, event.WithTypes(&Registered{}), event.WithDeadLetter(func(ctx context.Context, dl event.DeadLetter) {
		mu.Lock()
		dead = append(dead, dl)
		mu.Unlock()
	}))
	values, pointers := newSeen[Registered](), newSeen[*Registered]()
	event.Subscribe(reader, ">", values.handler, event.Durable("values"))
	event.Subscribe(reader, ">", pointers.handler, event.Durable("pointers"))
	values.waitFor(t, "the value", atLeast[Registered](1))
	pointers.waitFor(t, "the pointer", atLeast[*Registered](1))
	if err := reader.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if v := values.snapshot(); len(v) != 1 || v[0].Payload.UserID != "u-1" {
		t.Fatalf("value handler got %v", v)
	}
	if p := pointers.snapshot(); len(p) != 1 || p[0].Payload.UserID != "u-2" {
		t.Fatalf("pointer handler got %v", p)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dead) != 2 || !errors.Is(dead[0].Err, event.ErrUnknownType) {
		t.Fatalf("dead letters %v, want the unknown type twice (once per subscription)", dead)
	}
	if dls, _ := reader.DeadLetters(ctx, "", 0); len(dls) != 2 {
		t.Fatalf("stored dead letters: %d, want 2", len(dls))
	}
}

func TestDurableNeedsStore(t *testing.T) {
	bus, _ := event.New[int]()
	defer bus.Close(t.Context())
	if _, err := event.Subscribe(bus, ">", func(context.Context, event.Event[int]) error { return nil }, event.Durable("x")); !errors.Is(err, event.ErrNoStore) {
		t.Fatalf("durable subscription without a store: %v", err)
	}
	sbus := newStoreBus[int](t, openSQLite(t))
	h := func(context.Context, event.Event[int]) error { return nil }
	if _, err := event.Subscribe(sbus, ">", h, event.Durable("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := event.Subscribe(sbus, ">", h, event.Durable("x")); err == nil {
		t.Fatal("two durable subscriptions of one name on one bus")
	}
	if _, err := event.Subscribe(sbus, ">", h, event.Durable("y"), event.Sync()); err == nil {
		t.Fatal("a synchronous durable subscription was accepted")
	}
}

// flakyDeadLetters is a real SQLite store whose dead-letter writes fail
// while down is set, as when the database is briefly unreachable.
type flakyDeadLetters struct {
	*sqlitestore.Store
	down atomic.Bool
}

func (f *flakyDeadLetters) PutDeadLetter(ctx context.Context, d store.DeadLetterRecord) error {
	if f.down.Load() {
		return errors.New("database unreachable")
	}
	return f.Store.PutDeadLetter(ctx, d)
}

// A durable subscription does not move past a failed event whose dead
// letter the store could not keep: it delivers it again later.
func TestDurableKeepsEventWhenDeadLetterFails(t *testing.T) {
	ctx := t.Context()
	s := &flakyDeadLetters{Store: openSQLite(t).(*sqlitestore.Store)}
	s.down.Store(true)
	bus := newStoreBus[Registered](t, s)
	var attempts atomic.Int64
	event.Subscribe(bus, ">", func(ctx context.Context, ev event.Event[Registered]) error {
		if attempts.Add(1) == 3 {
			s.down.Store(false) // the database is back for the third delivery
		}
		return errors.New("handler fails")
	}, event.Durable("billing"))
	bus.Publish(ctx, "user.registered", Registered{N: 1})
	deadline := time.Now().Add(10 * time.Second)
	for {
		dls, err := bus.DeadLetters(ctx, "billing", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(dls) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter stored after %d attempts", attempts.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := attempts.Load(); n < 3 {
		t.Fatalf("event delivered %d times; it must be delivered again while its dead letter cannot be stored", n)
	}
}
