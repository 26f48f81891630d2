package event

import (
	"context"
	"fmt"

	"github.com/ncore-io/event/store"
)

// TxAppender is implemented by stores that can append inside a transaction
// of the caller's, of type Tx: *sql.Tx for store/sqlitestore, pgx.Tx for
// store/pgstore.
type TxAppender[Tx any] interface {
	AppendTx(ctx context.Context, tx Tx, recs []store.Record, expect ...store.Expect) error
}

// PublishTx appends an event to the bus's store inside the caller's
// transaction tx, the transactional outbox: the event is stored if and only
// if tx commits, together with whatever else tx writes. Durable
// subscriptions ([Durable]) deliver it after the commit; in-process
// subscriptions do not see it, since it may yet be rolled back.
//
// The bus's store must implement [TxAppender] for tx's type, or PublishTx
// returns an error. Its options are those of [Bus.Publish].
func PublishTx[T, Tx any](ctx context.Context, b *Bus[T], tx Tx, topic string, payload T, opts ...PublishOption) error {
	if b.store == nil {
		return fmt.Errorf("event: publish %s in transaction: %w", topic, ErrNoStore)
	}
	txs, ok := b.store.(TxAppender[Tx])
	if !ok {
		return fmt.Errorf("event: publish %s in transaction: the store (%T) cannot append in a %T", topic, b.store, tx)
	}
	if st := b.state.Load(); st != stateOpen {
		return fmt.Errorf("event: publish %s in transaction: %w", topic, ErrClosed)
	}
	if err := store.ValidateTopic(topic); err != nil {
		return fmt.Errorf("event: publish in transaction: %w", err)
	}
	parent, _ := ctx.Value(ctxKey{}).(deliveryInfo)
	d, exp := b.stamp(ctx, parent, topic, payload, opts)
	add := func(ctx context.Context, recs []store.Record, expect ...store.Expect) error {
		return txs.AppendTx(ctx, tx, recs, expect...)
	}
	if err := b.appendEvent(ctx, d, exp, add); err != nil {
		return fmt.Errorf("event: publish %s in transaction: %w", topic, err)
	}
	return nil
}
