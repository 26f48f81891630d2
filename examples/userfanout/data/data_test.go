package data_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/examples/userfanout/data"
	"github.com/ncore-io/event/examples/userfanout/data/datatest"
	"github.com/ncore-io/event/store"
)

// A row written in a transaction and an event published in it through the
// outbox commit together, or roll back together, on both drivers; and the
// tables survive reopening the database.
func TestOutboxCommitsWithTheTransaction(t *testing.T) {
	t.Parallel()
	for _, driver := range datatest.Drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			opts := datatest.Options(t, driver)
			db := datatest.Open(t, opts)
			if db.Driver() != driver {
				t.Errorf("Driver() = %q, want %q", db.Driver(), driver)
			}
			if driver == data.Postgres {
				// The service's tables are in their own schema, not in public.
				var n int
				if err := db.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'users'`, data.Schema).Scan(&n); err != nil || n != 1 {
					t.Errorf("users tables in schema %s: %d (%v), want 1", data.Schema, n, err)
				}
			}
			bus, err := event.New[string](event.WithStore(db.Store()))
			if err != nil {
				t.Fatal(err)
			}
			defer bus.Close(ctx)
			write := func(id string, fail bool) error {
				return db.InTx(ctx, func(tx data.Tx) error {
					n, err := tx.Exec(ctx, `INSERT INTO profiles (user_id, display_name, event_id, created_at) VALUES ($1, $2, $3, $4)`, id, "x", "e", "t")
					if err != nil {
						return err
					}
					if n != 1 {
						t.Errorf("Exec changed %d rows, want 1", n)
					}
					if err := bus.PublishTx(ctx, tx.Outbox(), "user.registered", id, event.Aggregate("user-"+id)); err != nil {
						return err
					}
					if fail {
						return errors.New("changed my mind")
					}
					return nil
				})
			}
			if err := write("1", false); err != nil {
				t.Fatal(err)
			}
			if err := write("2", true); err == nil || err.Error() != "changed my mind" {
				t.Fatalf("InTx = %v, want f's error", err)
			}
			check := func(db *data.DB) {
				t.Helper()
				for id, want := range map[string]bool{"1": true, "2": false} {
					var name string
					err := db.QueryRow(ctx, `SELECT display_name FROM profiles WHERE user_id = $1`, id).Scan(&name)
					if got := err == nil; got != want {
						t.Errorf("row %s stored: %v (%v), want %v", id, got, err, want)
					}
					if !want && !errors.Is(err, sql.ErrNoRows) {
						t.Errorf("missing row %s: error %v, want one matching sql.ErrNoRows", id, err)
					}
					recs, err := db.Store().LoadAggregate(ctx, "user-"+id, 0)
					if err != nil {
						t.Fatal(err)
					}
					if got := len(recs) == 1; got != want {
						t.Errorf("event of %s stored: %v (%d records), want %v", id, got, len(recs), want)
					}
				}
			}
			check(db)
			if err := bus.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			check(datatest.Open(t, opts))
		})
	}
}

// A panic in InTx's function rolls the transaction back, and the database
// stays usable (on SQLite, the one writer is released).
func TestInTxRollsBackOnPanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := datatest.SQLite(t)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic did not reach the caller")
			}
		}()
		db.InTx(ctx, func(tx data.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO processed_events (subscription, event_id, handled_at) VALUES ('s', 'e', 't')`); err != nil {
				t.Fatal(err)
			}
			panic("boom")
		})
	}()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n int
	if err := db.InTx(wctx, func(tx data.Tx) error {
		return tx.QueryRow(wctx, `SELECT count(*) FROM processed_events`).Scan(&n)
	}); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d rows after the panic, want 0", n)
	}
	if err := db.Store().Append(wctx, []store.Record{{ID: "0191d5a0-8d3c-7c4e-9a51-3b2f4c7d8e90", Topic: "a", Time: time.Now(), Payload: []byte("1")}}); err != nil {
		t.Errorf("append after the panic: %v", err)
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		opts data.Options
		want string
	}{
		{data.Options{}, `unknown driver ""`},
		{data.Options{Driver: "mysql", Path: "x.db"}, `unknown driver "mysql" (want sqlite or postgres)`},
		{data.Options{Driver: data.SQLite}, "empty SQLite path"},
		{data.Options{Driver: data.Postgres}, "empty PostgreSQL DSN"},
		{data.Options{Driver: data.Postgres, DSN: "postgres://[bad"}, "data: open"},
	} {
		db, err := data.Open(context.Background(), c.opts)
		if err == nil {
			db.Close()
			t.Errorf("Open(%+v) succeeded", c.opts)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%+v) = %v, want an error containing %q", c.opts, err, c.want)
		}
	}
}
