package sqlitestore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
	"github.com/ncore-io/event/store/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		Open: func(tb testing.TB, maxPayload int) store.Store {
			return open(tb, sqlitestore.WithMaxPayloadSize(maxPayload))
		},
		Begin: func(ctx context.Context, tb testing.TB, s store.Store) storetest.Tx {
			st := s.(*sqlitestore.Store)
			tx, err := st.DB().BeginTx(ctx, nil)
			if err != nil {
				tb.Errorf("BeginTx: %v", err)
				return nil
			}
			tb.Cleanup(func() { _ = tx.Rollback() })
			return outboxTx{st, tx}
		},
	})
}

// open opens a store in a new file in tb's temporary directory.
func open(tb testing.TB, opts ...sqlitestore.Option) *sqlitestore.Store {
	tb.Helper()
	s, err := sqlitestore.Open(tb.Context(), filepath.Join(tb.TempDir(), "events.db"), opts...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s
}

type outboxTx struct {
	s  *sqlitestore.Store
	tx *sql.Tx
}

func (o outboxTx) Append(ctx context.Context, recs []store.Record, expect ...store.Expect) error {
	return o.s.AppendTx(ctx, o.tx, recs, expect...)
}
func (o outboxTx) Commit(context.Context) error   { return o.tx.Commit() }
func (o outboxTx) Rollback(context.Context) error { return o.tx.Rollback() }
