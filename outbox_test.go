package event_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// Events stored with PublishTx count in Stats once a durable subscription
// of the bus has seen them committed; a rolled-back one never counts.
func TestOutboxStats(t *testing.T) {
	t.Parallel()
	s := openSQLite(t).(*sqlitestore.Store)
	bus := newStoreBus[int](t, s)
	got := newSeen[int]()
	subscribe(t, bus, "tx.>", got.handler, event.Durable("reader"))
	inTx := func(commit bool, n int) {
		tx, err := s.DB().BeginTx(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := bus.PublishTx(t.Context(), tx, "tx.event", n); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	inTx(false, 1)
	inTx(true, 2)
	inTx(true, 3)
	got.waitFor(t, "the committed events", atLeast[int](2))
	closeBus(t, bus)
	st := bus.Stats()
	if st.Published != 2 || st.Processed != 2 || st.Delivered != 2 {
		t.Errorf("Published %d Delivered %d Processed %d, want 2 of each: the committed events", st.Published, st.Delivered, st.Processed)
	}
}

// PublishTx refuses a transaction of the wrong type with an error naming
// both types, and stores nothing.
func TestPublishTxWrongType(t *testing.T) {
	t.Parallel()
	s := openSQLite(t)
	bus := newStoreBus[int](t, s)
	err := bus.PublishTx(t.Context(), "not a tx", "a", 1)
	if err == nil || !strings.Contains(err.Error(), "string") || !strings.Contains(err.Error(), "*sql.Tx") {
		t.Fatalf("PublishTx with a string = %v, want an error naming string and *sql.Tx", err)
	}
	var nilTx *sql.Tx
	if err := bus.PublishTx(t.Context(), nilTx, "a", 1); err == nil {
		t.Fatal("PublishTx with a nil *sql.Tx succeeded")
	}
	if _, next, err := s.Read(t.Context(), store.Query{}); err != nil || next != "" {
		t.Fatalf("store not empty after refused PublishTx calls: %q %v", next, err)
	}
	mem := newBus[int](t)
	if err := mem.PublishTx(t.Context(), nilTx, "a", 1); !errors.Is(err, event.ErrNoStore) {
		t.Fatalf("PublishTx on a bus without a store = %v, want ErrNoStore", err)
	}
}

// userService publishes inside its own transaction; it depends on an
// interface, so a unit test can give it a MockBus.
type userService struct {
	db     *sql.DB
	events event.TxPublisher[Registered]
}

func (s *userService) register(ctx context.Context, id string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY)`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO users (id) VALUES (?)`, id); err != nil {
		return err
	}
	if err := s.events.PublishTx(ctx, tx, "user.registered", Registered{UserID: id}, event.Aggregate(id)); err != nil {
		return err
	}
	return tx.Commit()
}

// The same service runs against a real bus: its event reaches a durable
// subscription after the commit.
func TestTxPublisherOnBus(t *testing.T) {
	t.Parallel()
	s := openSQLite(t).(*sqlitestore.Store)
	bus := newStoreBus[Registered](t, s)
	got := newSeen[Registered]()
	subscribe(t, bus, "user.>", got.handler, event.Durable("welcome"))
	svc := &userService{db: s.DB(), events: bus}
	if err := svc.register(t.Context(), "u-1"); err != nil {
		t.Fatal(err)
	}
	if evs := got.waitFor(t, "the outbox event", atLeast[Registered](1)); evs[0].Payload.UserID != "u-1" || evs[0].AggregateID != "u-1" {
		t.Fatalf("got %+v", evs[0])
	}
}

// CatchUp waits for what Close does not: events stored with PublishTx
// before the call, handled by the bus's durable subscriptions.
func TestCatchUp(t *testing.T) {
	t.Parallel()
	s := openSQLite(t).(*sqlitestore.Store)
	bus := newStoreBus[int](t, s, event.WithPollInterval(time.Hour)) // only CatchUp's wake-up
	release := make(chan struct{})
	var handled atomic.Int64
	subscribe(t, bus, "tx.>", func(context.Context, event.Event[int]) error {
		<-release
		handled.Add(1)
		return nil
	}, event.Durable("slow"))
	subscribe(t, bus, "other", func(context.Context, event.Event[int]) error { return nil }, event.Durable("idle"))
	tx, err := s.DB().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := bus.PublishTx(t.Context(), tx, "tx.event", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := bus.CatchUp(short); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "slow") {
		t.Fatalf("CatchUp with the handler held = %v, want the deadline naming the subscription", err)
	}
	close(release)
	if err := bus.CatchUp(t.Context()); err != nil {
		t.Fatalf("CatchUp: %v", err)
	}
	if n := handled.Load(); n != 5 {
		t.Fatalf("CatchUp returned with %d of 5 events handled", n)
	}
	if err := newBus[int](t).CatchUp(t.Context()); err != nil {
		t.Fatalf("CatchUp without durable subscriptions: %v", err)
	}
}

// countingTx counts the store's appends in a caller's transaction.
type countingTx struct {
	*sqlitestore.Store
	calls atomic.Int64
}

func (c *countingTx) AppendInTx(ctx context.Context, tx any, recs []store.Record, expect ...store.Expect) error {
	c.calls.Add(1)
	return c.Store.AppendInTx(ctx, tx, recs, expect...)
}

// PublishBatchTx stores a batch in the caller's transaction with one store
// call, all or none; durable subscriptions deliver it once tx commits.
func TestPublishBatchTx(t *testing.T) {
	t.Parallel()
	s := &countingTx{Store: openSQLite(t).(*sqlitestore.Store)}
	bus := newStoreBus[Registered](t, s)
	got := newSeen[Registered]()
	subscribe(t, bus, "user.>", got.handler, event.Durable("all"))
	msgs := func(n int) []event.Message[Registered] {
		var out []event.Message[Registered]
		for i := range n {
			out = append(out, event.Message[Registered]{Topic: "user.registered", Payload: Registered{N: i}, Options: []event.PublishOption{event.Aggregate("u-1")}})
		}
		return out
	}
	tx, err := s.DB().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.PublishBatchTx(t.Context(), tx, msgs(3)); err != nil {
		t.Fatal(err)
	}
	if n := s.calls.Load(); n != 1 {
		t.Errorf("a batch of 3 took %d store calls, want 1", n)
	}
	bad := append(msgs(1), event.Message[Registered]{Topic: "bad..topic"})
	if err := bus.PublishBatchTx(t.Context(), tx, bad); !errors.Is(err, event.ErrInvalidTopic) {
		t.Fatalf("PublishBatchTx with an invalid topic = %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	evs := got.waitFor(t, "the batch", atLeast[Registered](3))
	closeBus(t, bus)
	if len(evs) != 3 || evs[2].Version != 3 || evs[2].Payload.N != 2 {
		t.Fatalf("delivered %d events (last %+v), want the 3 of the batch, versions 1 to 3", len(evs), evs[len(evs)-1])
	}
}
