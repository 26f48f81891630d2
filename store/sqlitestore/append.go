package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ncore-io/event/store"
)

// Append implements [store.Store]. Concurrent Appends are queued to one
// writer goroutine that commits everything queued in one transaction (one
// fsync). Expectations and duplicate IDs are checked per Append before
// anything is written, so a failed Append fails alone. If ctx ends while the
// Append is queued (the writer may be waiting for a caller's transaction or
// another process to release the write lock), Append withdraws it and
// returns ctx's error, having stored nothing. If ctx ends once the writer
// has taken it into a transaction, Append returns at once with an error
// that matches both ctx's error and [store.ErrMaybeStored]: the commit goes
// on, and a retry with the same IDs is a no-op if it succeeded.
//
// Once the database file at the store's path is no longer the file Open
// opened (deleted, or replaced by another), Append and AppendTx fail with
// [store.ErrUnavailable] and store nothing, rather than write on into a
// file that nobody can open any more; the store moves its write-ahead log
// into the file it has open, so that a database put at the path does not
// take the log for its own. Reopen the store.
func (s *Store) Append(ctx context.Context, recs []store.Record, expect ...store.Expect) error {
	if err := s.enter(ctx, "append"); err != nil {
		return err
	}
	req, err := s.newRequest(recs, expect)
	if err != nil {
		return err
	}
	select {
	case s.queue <- req:
	case <-ctx.Done():
		return fmt.Errorf("sqlitestore: append: %w", ctx.Err())
	case <-s.quit:
		return fmt.Errorf("sqlitestore: append: %w", store.ErrClosed)
	}
	var res error
	select {
	case res = <-req.done:
	case <-ctx.Done():
		if req.state.CompareAndSwap(pending, abandoned) {
			return fmt.Errorf("sqlitestore: append: %w before the writer took it; nothing was stored", ctx.Err())
		}
		// Taken: the commit is under way, and its outcome may take a
		// while (a large transaction, a slow disk).
		select {
		case res = <-req.done:
		default:
			return fmt.Errorf("sqlitestore: append: %w while it was being committed: %w", ctx.Err(), store.ErrMaybeStored)
		}
	case <-s.exited:
		if req.state.CompareAndSwap(pending, abandoned) {
			return fmt.Errorf("sqlitestore: append: %w", store.ErrClosed)
		}
		res = <-req.done
	}
	if res != nil {
		return fmt.Errorf("sqlitestore: append: %w", res)
	}
	for i := range recs {
		recs[i].Position, recs[i].Version = req.rows[i].position, req.rows[i].version
	}
	return nil
}

func (s *Store) newRequest(recs []store.Record, expect []store.Expect) (*appendReq, error) {
	if err := store.ValidateRecords(recs, expect, s.cfg.maxPayload); err != nil {
		return nil, fmt.Errorf("sqlitestore: append: %w", err)
	}
	req := &appendReq{rows: make([]row, len(recs)), expect: expect, done: make(chan error, 1)}
	for i := range recs {
		var err error
		if req.rows[i], err = toRow(&recs[i]); err != nil {
			return nil, fmt.Errorf("sqlitestore: append: %w: %w", store.ErrInvalidRecord, err)
		}
		req.rows[i].part = int64(store.PartitionKey(recs[i].AggregateID, recs[i].ID) % uint32(s.cfg.partitions))
	}
	return req, nil
}

// AppendTx appends recs inside tx, the caller's transaction, with the
// semantics of [Store.Append]: the events commit or roll back with the
// caller's own writes (the transactional outbox). Position and Version are
// written back when AppendTx returns, and are final once tx commits. A
// failed AppendTx (a conflict, a duplicate ID) leaves tx as it was, so the
// caller may go on or roll back.
//
// tx must be a transaction on [Store.DB]: SQLite has one writer, and the
// store's writer connection is it. Use tx from one goroutine at a time.
func (s *Store) AppendTx(ctx context.Context, tx *sql.Tx, recs []store.Record, expect ...store.Expect) error {
	if err := s.enter(ctx, "append in transaction"); err != nil {
		return err
	}
	if tx == nil {
		return errors.New("sqlitestore: append in transaction: nil transaction")
	}
	req, err := s.newRequest(recs, expect)
	if err != nil {
		return err
	}
	// The caller commits tx, after AppendTx: this can only tell that the
	// file is gone already.
	if err := s.checkFile(); err != nil {
		return fmt.Errorf("sqlitestore: append in transaction: %w", err)
	}
	// A savepoint, so that an error part-way through leaves tx as it was.
	if _, err := tx.ExecContext(ctx, `SAVEPOINT append_tx`); err != nil {
		return s.fail(ctx, "append in transaction", err)
	}
	// Optimistic, as the writer's batches: no lookup of the IDs first. A
	// stored ID fails the insert on the unique index; the append is then
	// rolled back to the savepoint and redone with a batch that looks the
	// IDs up, as the writer redoes its transaction.
	b := newBatch(s, tx, true)
	err = b.add(ctx, []*appendReq{req})
	if err == nil {
		err = b.finish(ctx)
	}
	if err != nil {
		if _, rbErr := tx.ExecContext(ctx, `ROLLBACK TO append_tx`); rbErr != nil {
			_, relErr := tx.ExecContext(ctx, `RELEASE append_tx`)
			return s.fail(ctx, "append in transaction", errors.Join(err, rbErr, relErr))
		}
		b = newBatch(s, tx, false)
		err = b.add(ctx, []*appendReq{req})
		if err == nil {
			err = b.finish(ctx)
		}
	}
	if err != nil {
		_, rbErr := tx.ExecContext(ctx, `ROLLBACK TO append_tx`)
		_, relErr := tx.ExecContext(ctx, `RELEASE append_tx`)
		return s.fail(ctx, "append in transaction", errors.Join(err, rbErr, relErr))
	}
	if _, err := tx.ExecContext(ctx, `RELEASE append_tx`); err != nil {
		return s.fail(ctx, "append in transaction", err)
	}
	b.resolve()
	if req.err != nil {
		return fmt.Errorf("sqlitestore: append in transaction: %w", req.err)
	}
	for i := range recs {
		recs[i].Position, recs[i].Version = req.rows[i].position, req.rows[i].version
	}
	return nil
}
