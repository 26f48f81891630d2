package sqlitestore

import (
	"context"
	"errors"
	"time"

	"github.com/ncore-io/event/store"
)

// deleteBatch bounds how many records one retention transaction deletes, so
// that appends wait for it only briefly.
const deleteBatch = 1000

// DeleteBefore implements [store.Store]: it deletes the log's oldest
// records, up to the first whose Time is not before t. It deletes in
// transactions of at most 1000 records and records the highest deleted
// position, below which cursors expire.
func (s *Store) DeleteBefore(ctx context.Context, t time.Time) (int64, error) {
	if err := s.enter(ctx, "delete before"); err != nil {
		return 0, err
	}
	// Time < t, at microsecond precision: round t up to a whole microsecond.
	t = store.ClampTime(t)
	cut := t.UnixMicro() + boolInt(t.Nanosecond()%1000 != 0)
	var total int64
	for {
		n, err := s.deleteOnce(ctx, cut)
		total += n
		if err != nil {
			return total, s.fail(ctx, "delete before", err)
		}
		if n < deleteBatch {
			return total, nil
		}
	}
}

// deleteOnce deletes the first records of the log while their Time is
// before cut, at most deleteBatch of them.
func (s *Store) deleteOnce(ctx context.Context, cut int64) (int64, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT position, time_us FROM event_log ORDER BY position LIMIT ?`, deleteBatch)
	if err != nil {
		return 0, err
	}
	var n, high int64
	for rows.Next() {
		var pos, us int64
		if err := rows.Scan(&pos, &us); err != nil {
			rows.Close()
			return 0, err
		}
		if us >= cut {
			break
		}
		n, high = n+1, pos
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil || n == 0 {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM event_log WHERE position <= ?`, high); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE event_meta SET value = max(value, ?) WHERE key = 'low_watermark'`, high); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return n, nil
}
