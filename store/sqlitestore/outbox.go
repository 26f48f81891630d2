package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/ncore-io/event/store"
)

var _ store.TxAppender = (*Store)(nil)

// AppendInTx is [Store.AppendTx] for a caller that holds the transaction
// as an any, such as the event bus's PublishTx: tx must be a *sql.Tx of
// this store's database (see [Store.DB]).
func (s *Store) AppendInTx(ctx context.Context, tx any, recs []store.Record, expect ...store.Expect) error {
	t, ok := tx.(*sql.Tx)
	if !ok {
		return fmt.Errorf("sqlitestore: append in transaction: the transaction is a %T, want a *sql.Tx from the store's DB", tx)
	}
	return s.AppendTx(ctx, t, recs, expect...)
}
