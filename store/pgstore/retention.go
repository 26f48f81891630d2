package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ncore-io/event/store"
)

// deleteBatch is how many records one DeleteBefore statement removes: small
// enough that its locks and WAL stay short.
const deleteBatch = 1000

// DeleteBefore deletes the log's oldest records, in read order up to the
// first whose Time is not before t, 1000 at a time, each batch in its own
// transaction, and returns how many it deleted. It only deletes below the
// read horizon (records every reader can already see), so a record still
// invisible to readers is kept for one more round.
//
// Each batch raises the retention watermark to the highest (transaction ID,
// position) it deleted, in the same transaction; [Store.Read] fails with
// store.ErrCursorExpired for cursors below the watermark, because reading on
// from there would silently skip deleted records. The zero cursor, a read
// from the start, never expires.
//
// When ctx ends between batches, DeleteBefore returns what it deleted so far
// with ctx's error.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	if err := s.enter("delete before"); err != nil {
		return 0, err
	}
	defer s.exit()
	// p: the first records below the horizon, in read order, each marked
	// old when it and every record before it are older than t.
	sql := `WITH p AS (
	SELECT txid, position, bool_and(time < $1) OVER (ORDER BY txid, position) AS old
	FROM ` + s.schema + `.events
	WHERE txid < $3::xid8
	ORDER BY txid, position LIMIT $2
), d AS (
	DELETE FROM ` + s.schema + `.events AS e USING p
	WHERE p.old AND e.txid = p.txid AND e.position = p.position
	RETURNING e.txid, e.position
), top AS (
	SELECT txid, position FROM d ORDER BY txid DESC, position DESC LIMIT 1
), raise AS (
	UPDATE ` + s.schema + `.retention AS r SET txid = top.txid, position = top.position
	FROM top WHERE (r.txid, r.position) < (top.txid, top.position)
)
SELECT count(*) FROM d`
	t = ceilMicro(store.ClampTime(t))
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("pgstore: delete before: %w", err)
		}
		h, err := s.horizon(ctx)
		if err != nil {
			return total, fmt.Errorf("pgstore: delete before: %w", err)
		}
		var n int64
		if err := s.pool.QueryRow(ctx, sql, t, deleteBatch, h).Scan(&n); err != nil {
			return total, fmt.Errorf("pgstore: delete before: %w", err)
		}
		total += n
		if n < deleteBatch {
			return total, nil
		}
	}
}

// ceilMicro rounds t up to the microsecond, the precision of stored times:
// a stored time is before t exactly when it is before ceilMicro(t), and at
// or after t exactly when it is at or after ceilMicro(t).
func ceilMicro(t time.Time) time.Time {
	u := t.UTC().Truncate(time.Microsecond)
	if u.Before(t) {
		u = u.Add(time.Microsecond)
	}
	return u
}
