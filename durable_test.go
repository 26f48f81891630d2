package event_test

import (
	"context"

	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
	"github.com/ncore-io/event/store/sqlitestore"
)

func TestPersistedPublish(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		s := open(t)
		bus := newStoreBus[Registered](t, s, event.WithSync())
		got := newSeen[Registered]()
		event.Subscribe(bus, "user.registered", got.handler)
		for i := range 3 {
			if err := bus.Publish(ctx, "user.registered", Registered{UserID: "u-1", N: i}, event.Aggregate("u-1"), event.Meta("k", "v")); err != nil {
				t.Fatal(err)
			}
		}
		evs := got.snapshot()
		if len(evs) != 3 {
			t.Fatalf("handled %d events, want 3", len(evs))
		}
		for i, ev := range evs {
			if ev.Version != int64(i+1) || ev.Position == 0 {
				t.Errorf("event %d: version %d position %d, want version %d and a position", i, ev.Version, ev.Position, i+1)
			}
			rec, err := s.Load(ctx, ev.ID.String())
			if err != nil {
				t.Fatalf("event %d not in the store: %v", i, err)
			}
			if rec.Position != ev.Position || rec.Topic != "user.registered" || rec.Metadata["k"] != "v" {
				t.Errorf("stored record %+v does not match event %+v", rec, ev)
			}
		}
		// A publish whose append fails returns the error and delivers nothing.
		if c, ok := s.(interface{ Close() error }); ok {
			c.Close()
		}
		err := bus.Publish(ctx, "user.registered", Registered{UserID: "u-2"})
		if !errors.Is(err, store.ErrClosed) {
			t.Fatalf("publish on a closed store: got %v, want store.ErrClosed", err)
		}
		if n := len(got.snapshot()); n != 3 {
			t.Fatalf("a failed append was delivered: %d events handled", n)
		}
		if st := bus.Stats(); st.Published != 3 {
			t.Errorf("Published = %d, want 3 (the failed publish must not count)", st.Published)
		}
	})
}

// A durable subscription catching up while publishers keep publishing sees
// every event exactly once, in store order per aggregate.
func TestDurableHandover(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		bus := newStoreBus[Registered](t, open(t))
		const before, during, publishers = 300, 300, 4
		publish := func(from, n int) error {
			for i := from; i < from+n; i++ {
				agg := fmt.Sprintf("u-%d", i%7)
				if err := bus.Publish(ctx, "user.registered", Registered{UserID: agg, N: i}, event.Aggregate(agg)); err != nil {
					return err
				}
			}
			return nil
		}
		if err := publish(0, before); err != nil {
			t.Fatal(err)
		}
		got := newSeen[Registered]()
		if _, err := event.Subscribe(bus, "user.*", got.handler, event.Durable("billing"), event.Checkpoint(10, 0)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, publishers)
		for p := range publishers {
			wg.Go(func() { errs <- publish(before+p*during, during) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		total := before + publishers*during
		evs := got.waitFor(t, "every event", atLeast[Registered](total))
		if len(evs) != total {
			t.Fatalf("handled %d events, want exactly %d", len(evs), total)
		}
		ids := map[string]bool{}
		lastVersion := map[string]int64{}
		for _, ev := range evs {
			if ids[ev.ID.String()] {
				t.Fatalf("event %s handled twice", ev.ID)
			}
			ids[ev.ID.String()] = true
			if ev.Version != lastVersion[ev.AggregateID]+1 {
				t.Fatalf("aggregate %s: version %d after %d", ev.AggregateID, ev.Version, lastVersion[ev.AggregateID])
			}
			lastVersion[ev.AggregateID] = ev.Version
		}
	})
}

// A durable subscription resumes from its checkpoint: a second bus on the
// same store handles only what the first did not.
func TestDurableResumes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		s := open(t)
		first := newStoreBus[Registered](t, s)
		got1 := newSeen[Registered]()
		event.Subscribe(first, ">", got1.handler, event.Durable("audit"))
		for i := range 50 {
			first.Publish(ctx, "user.registered", Registered{N: i})
		}
		got1.waitFor(t, "the first 50", atLeast[Registered](50))
		if err := first.Close(ctx); err != nil {
			t.Fatal(err)
		}

		// Published while no durable subscription runs.
		second := newStoreBus[Registered](t, s)
		for i := 50; i < 80; i++ {
			second.Publish(ctx, "user.registered", Registered{N: i})
		}
		got2 := newSeen[Registered]()
		event.Subscribe(second, ">", got2.handler, event.Durable("audit"))
		evs := got2.waitFor(t, "the other 30", atLeast[Registered](30))
		if len(evs) != 30 || evs[0].Payload.N != 50 || evs[29].Payload.N != 79 {
			t.Fatalf("resumed with %d events from %d: want exactly 50..79", len(evs), evs[0].Payload.N)
		}
		// A new durable name starts from the beginning.
		got3 := newSeen[Registered]()
		event.Subscribe(second, ">", got3.handler, event.Durable("analytics"))
		got3.waitFor(t, "all 80", atLeast[Registered](80))
	})
}

func TestOutbox(t *testing.T) {
	type txCase struct {
		name  string
		open  func(testing.TB) store.Store
		begin func(t *testing.T, s store.Store) (publish func(*event.Bus[Registered], Registered) error, commit, rollback func() error)
	}
	cases := []txCase{
		{"sqlite", openSQLite, func(t *testing.T, s store.Store) (func(*event.Bus[Registered], Registered) error, func() error, func() error) {
			db := s.(*sqlitestore.Store).DB()
			if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY)`); err != nil {
				t.Fatal(err)
			}
			tx, err := db.BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return func(bus *event.Bus[Registered], p Registered) error {
					if _, err := tx.Exec(`INSERT INTO users (id) VALUES (?)`, p.UserID); err != nil {
						return err
					}
					return bus.PublishTx(t.Context(), tx, "user.registered", p)
				},
				tx.Commit, tx.Rollback
		}},
		{"postgres", openPG, func(t *testing.T, s store.Store) (func(*event.Bus[Registered], Registered) error, func() error, func() error) {
			pool := s.(*pgstore.Store).Pool()
			if _, err := pool.Exec(t.Context(), `CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY)`); err != nil {
				t.Fatal(err)
			}
			tx, err := pool.Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return func(bus *event.Bus[Registered], p Registered) error {
					if _, err := tx.Exec(t.Context(), `INSERT INTO users (id) VALUES ($1)`, p.UserID); err != nil {
						return err
					}
					return bus.PublishTx(t.Context(), tx, "user.registered", p)
				},
				func() error { return tx.Commit(context.Background()) },
				func() error { return tx.Rollback(context.Background()) }
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := c.open(t)
			bus := newStoreBus[Registered](t, s)
			durable, live := newSeen[Registered](), newSeen[Registered]()
			event.Subscribe(bus, "user.>", durable.handler, event.Durable("mailer"))
			event.Subscribe(bus, "user.>", live.handler)

			publish, _, rollback := c.begin(t, s)
			if err := publish(bus, Registered{UserID: "rolled-back"}); err != nil {
				t.Fatal(err)
			}
			if err := rollback(); err != nil {
				t.Fatal(err)
			}
			publish, commit, _ := c.begin(t, s)
			if err := publish(bus, Registered{UserID: "committed"}); err != nil {
				t.Fatal(err)
			}
			if err := commit(); err != nil {
				t.Fatal(err)
			}
			// A marker published after the commit: once the durable
			// subscription has it, it has read past the outbox event too.
			if err := bus.Publish(t.Context(), "user.marker", Registered{UserID: "marker"}); err != nil {
				t.Fatal(err)
			}
			evs := durable.waitFor(t, "the marker", func(evs []event.Event[Registered]) bool {
				return len(evs) > 0 && evs[len(evs)-1].Payload.UserID == "marker"
			})
			var ids []string
			for _, ev := range evs {
				ids = append(ids, ev.Payload.UserID)
			}
			if !slices.Equal(ids, []string{"committed", "marker"}) {
				t.Fatalf("durable subscription got %v, want [committed marker]", ids)
			}
			live.waitFor(t, "the marker live", atLeast[Registered](1))
			if evs := live.snapshot(); len(evs) != 1 || evs[0].Payload.UserID != "marker" {
				t.Fatalf("an in-process subscription saw outbox events: %v", evs)
			}
		})
	}
}

// A durable subscription whose reads fail keeps retrying, and says so: its
// Err is the store's error while it lasts, Stats counts it, and both clear
// once the store recovers.
func TestDurableReadFailureIsExposed(t *testing.T) {
	t.Parallel()
	s := openSQLite(t).(*sqlitestore.Store)
	bus := newStoreBus[int](t, s)
	got := newSeen[int]()
	sub := subscribe(t, bus, "n", got.handler, event.Durable("reader"))
	publish(t, bus, "n", 1)
	got.waitFor(t, "the first event", atLeast[int](1))
	if _, err := s.DB().ExecContext(t.Context(), `ALTER TABLE event_log RENAME TO event_log_gone`); err != nil {
		t.Fatal(err)
	}
	bus.Publish(t.Context(), "n", 2) // fails, but wakes the reader
	waitUntil(t, "Err to report the failing reads", func() bool { return sub.Err() != nil })
	if err := sub.Err(); !strings.Contains(err.Error(), "cannot read the store, retrying") || !strings.Contains(err.Error(), "event_log") {
		t.Errorf("Err = %v, want the read error", err)
	}
	if st := bus.Stats(); st.StoreErrors == 0 {
		t.Error("Stats.StoreErrors is 0 while reads fail")
	}
	if _, err := s.DB().ExecContext(t.Context(), `ALTER TABLE event_log_gone RENAME TO event_log`); err != nil {
		t.Fatal(err)
	}
	publish(t, bus, "n", 3)
	got.waitFor(t, "the event after recovery", atLeast[int](2))
	waitUntil(t, "Err to clear", func() bool { return sub.Err() == nil })
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

// On PostgreSQL an append's signal may wake a durable subscription while
// an older transaction still hides the event; that transaction's end
// signals nothing, yet the subscription, which polls only once a minute,
// handles the event soon after it, whether alone or in a group.
func TestDurableWakesAfterHiddenEvent(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			t.Parallel()
			s := openPG(t).(*pgstore.Store)
			reader := newStoreBus[int](t, s, event.WithPollInterval(time.Minute))
			got := newSeen[int]()
			opts := []event.SubscribeOption{event.Durable("reader")}
			if shared {
				opts = append(opts, event.Shared(), event.Lease(time.Minute))
			}
			subscribe(t, reader, "n", got.handler, opts...)
			if err := reader.CatchUp(t.Context()); err != nil {
				t.Fatal(err)
			}
			older, err := s.Pool().Begin(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer older.Rollback(context.Background())
			if _, err := older.Exec(t.Context(), "SELECT pg_current_xact_id()"); err != nil {
				t.Fatal(err)
			}
			// Published by another bus, so that only the store's signals
			// wake the reader.
			writer := newStoreBus[int](t, s)
			publish(t, writer, "n", 1)
			// A read that finds the event hidden. A wake-up still pending
			// (CatchUp's own, or the append's) may read once more; the
			// pause lets it, so that no read but a signalled one comes
			// after the transaction ends. The test does not rely on it to
			// pass, only to fail without that signal.
			if err := reader.CatchUp(t.Context()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			if n := len(got.snapshot()); n != 0 {
				t.Fatalf("handled %d events while an older transaction was open", n)
			}
			ended := time.Now()
			if err := older.Rollback(t.Context()); err != nil {
				t.Fatal(err)
			}
			got.waitFor(t, "the event once the older transaction ended", atLeast[int](1))
			if d := time.Since(ended); d > 5*time.Second {
				t.Errorf("handled the event %v after the older transaction ended", d)
			}
		})
	}
}

// warnings is a slog handler that keeps the messages logged at Warn or
// above.
type warnings struct{ record[string] }

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.add(r.Message)
	return nil
}
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

// On a PostgreSQL store that does not LISTEN, durable subscriptions, alone
// and in a group, poll for what another process appends, and say nothing
// about it: not listening was asked for.
func TestDurablePollsStoreWithoutListen(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pgtest.DSN(t)
	quiet, err := pgstore.Open(ctx, dsn, pgstore.WithoutListen())
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Close()
	other, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	warned := &warnings{}
	bus := newStoreBus[Registered](t, quiet, event.WithLogger(slog.New(warned)))
	alone, grouped := newSeen[Registered](), newSeen[Registered]()
	subscribe(t, bus, "user.>", alone.handler, event.Durable("alone"))
	subscribe(t, bus, "user.>", grouped.handler, event.Durable("grouped"), event.Shared())
	pub := newStoreBus[Registered](t, other)
	publish(t, pub, "user.registered", Registered{N: 1}, event.Aggregate("a"))
	alone.waitFor(t, "the other process's event, alone", atLeast[Registered](1))
	grouped.waitFor(t, "the other process's event, in a group", atLeast[Registered](1))
	if w := warned.get(); len(w) > 0 {
		t.Fatalf("logged %q on a store that was asked not to listen", w)
	}
}

// readStarts is a store that says after which cursor each Read begins.
type readStarts struct {
	store.Store
	started chan store.Cursor
}

func (s *readStarts) Read(ctx context.Context, q store.Query) ([]store.Record, store.Cursor, error) {
	select {
	case s.started <- q.After:
	default:
	}
	return s.Store.Read(ctx, q)
}

// A durable subscription reads the page after a full one while it handles
// that one, so that the store's round trip and scan overlap the handling,
// and still hands each event over once, in order.
func TestDurableReadsAhead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(testing.TB) store.Store) {
		ctx := t.Context()
		s := open(t)
		const events = 1234
		recs := make([]store.Record, events)
		for i := range recs {
			recs[i] = benchRecord(i)
		}
		for part := range slices.Chunk(recs, 500) {
			if err := s.Append(ctx, part); err != nil {
				t.Fatal(err)
			}
		}
		_, second, err := s.Read(ctx, store.Query{Limit: 500}) // where the second page starts
		if err != nil {
			t.Fatal(err)
		}
		rs := &readStarts{Store: s, started: make(chan store.Cursor, 64)}
		bus := newStoreBus[Registered](t, rs)
		var mu sync.Mutex
		var got []int
		subscribe(t, bus, "user.>", func(ctx context.Context, ev event.Event[Registered]) error {
			if ev.Payload.N == 0 {
				deadline := time.After(10 * time.Second)
			wait:
				for {
					select {
					case after := <-rs.started:
						if after == second {
							break wait
						}
					case <-deadline:
						t.Error("no read of the second page began while the first was being handled")
						break wait
					}
				}
			}
			mu.Lock()
			got = append(got, ev.Payload.N)
			mu.Unlock()
			return nil
		}, event.Durable("ahead"))
		waitUntil(t, "every event", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) >= events
		})
		closeBus(t, bus)
		mu.Lock()
		defer mu.Unlock()
		for i, n := range got {
			if n != i {
				t.Fatalf("event %d handled was number %d; want each once, in order (%d handled)", i, n, len(got))
			}
		}
		if len(got) != events {
			t.Fatalf("%d events handled, want %d", len(got), events)
		}
	})
}
