package store

import "context"

// TxAppender is implemented by stores that can append inside a database
// transaction of the caller's, the transactional outbox: the records are
// stored if and only if the transaction commits, with whatever else it
// writes. The event bus's PublishTx goes through it.
type TxAppender interface {
	// AppendInTx is [Store.Append] inside tx, which must be the driver's
	// transaction type (*sql.Tx for store/sqlitestore, pgx.Tx for
	// store/pgstore); a tx of another type fails with an error naming
	// both types, and stores nothing. Positions are assigned as by Append;
	// readers see the records once tx commits.
	AppendInTx(ctx context.Context, tx any, recs []Record, expect ...Expect) error
}
