package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/ncore-io/event/store"
)

var _ store.TxAppender = (*Store)(nil)

// AppendInTx is [Store.AppendTx] for a caller that holds the transaction
// as an any, such as the event bus's PublishTx: tx must be a pgx.Tx on
// the store's database.
func (s *Store) AppendInTx(ctx context.Context, tx any, recs []store.Record, expect ...store.Expect) error {
	t, ok := tx.(pgx.Tx)
	if !ok {
		return fmt.Errorf("pgstore: append in transaction: the transaction is a %T, want a pgx.Tx", tx)
	}
	return s.AppendTx(ctx, t, recs, expect...)
}
