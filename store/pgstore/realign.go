package pgstore

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/ncore-io/event/store"
)

// xidOffsetSQL defines xid_offset as migration 4 does, returning offset.
func xidOffsetSQL(schema string, offset int64) string {
	return "CREATE OR REPLACE FUNCTION " + schema + ".xid_offset() RETURNS bigint " +
		"LANGUAGE sql STABLE PARALLEL SAFE AS $fn$ SELECT " + strconv.FormatInt(offset, 10) + "::bigint $fn$"
}

// realign keeps the log's order ahead of the cluster's transaction IDs.
//
// The log orders records by key: log_xid of the inserting transaction's ID
// (the ID plus the schema's offset, see migration 4), then position.
// Cursors, the retention watermark and group checkpoints are keys too. In
// the cluster that wrote them, every record's key is below log_xid of the
// next transaction ID, and every cursor's at most that (a cursor may be a
// read horizon, which can be log_xid of the next ID itself). A dump
// restored into another cluster keeps the keys, but that cluster's
// transaction IDs are its own, usually far lower: new records would sort
// before the restored ones and below their readers' cursors, and the read
// horizon would hide the restored records until the new cluster's IDs
// caught up.
//
// So realign looks for the highest key that the schema holds: the last
// record's, the retention watermark, and the cursors of checkpoints and of
// group partitions. When it is not below what this cluster's transactions
// get now, realign raises the offset so that the oldest transaction still
// running, and so every later one, gets a key above it, and logs that it
// did. The cluster's transaction IDs can only have gone back by a restore,
// or by a recovery to an earlier point; in a log that no such event moved,
// realign changes nothing.
//
// migrate runs it in its transaction, under the schema's lock. Raising the
// offset while processes append would let a transaction that took its key
// under the old offset commit below a reader's new horizon; that is why
// processes must not run against the database between the restore and the
// first New (see the package documentation). A process that does is not
// made sound by this, but a cursor it holds that is now ahead of the log is
// refused (see aheadError).
func (s *Store) realign(ctx context.Context, tx pgx.Tx) error {
	// The snapshot is the statement's own, which its subqueries read with.
	// The migrating transaction (this one) is not in its own snapshot's
	// in-progress list, hence least.
	var oldest, next, offset, lastRecord, watermark int64
	err := tx.QueryRow(ctx, `SELECT least(pg_snapshot_xmin(c.s), pg_current_xact_id())::text::bigint,
	pg_snapshot_xmax(c.s)::text::bigint,
	`+s.schema+`.xid_offset(),
	coalesce((SELECT txid FROM `+s.schema+`.events ORDER BY txid DESC, position DESC LIMIT 1), '0')::text::bigint,
	coalesce((SELECT txid FROM `+s.schema+`.retention), '0')::text::bigint
FROM (SELECT pg_current_snapshot() AS s) AS c`).Scan(&oldest, &next, &offset, &lastRecord, &watermark)
	if err != nil {
		return fmt.Errorf("realign the order: %w", err)
	}
	rows, err := tx.Query(ctx, "SELECT cursor FROM "+s.schema+".checkpoints UNION ALL SELECT cursor FROM "+s.schema+".group_partitions WHERE cursor <> ''")
	if err != nil {
		return fmt.Errorf("realign the order: %w", err)
	}
	cursors, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("realign the order: %w", err)
	}
	var lastCursor int64
	for _, c := range cursors {
		// SetCheckpoint and Commit store only cursors of this store; one
		// that is not (written by hand) is refused by reads anyway.
		if k, err := s.parseCursor(store.Cursor(c)); err == nil {
			lastCursor = max(lastCursor, int64(k.txid))
		}
	}
	now := next + offset // log_xid(next)
	if lastRecord < now && watermark < now && lastCursor <= now {
		return nil
	}
	top := max(lastRecord, watermark, lastCursor)
	raised := top + 1 - oldest
	if _, err := tx.Exec(ctx, xidOffsetSQL(s.schema, raised)); err != nil {
		return fmt.Errorf("realign the order: raise the transaction ID offset from %d to %d: %w", offset, raised, err)
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "pgstore: the log holds keys ahead of this cluster's transaction IDs, as after a restore into another cluster; raised the offset added to them, so that new records sort after every stored one",
		slog.String("schema", s.opts.schema), slog.Int64("highest_key", top), slog.Int64("next_xid", next),
		slog.Int64("old_offset", offset), slog.Int64("offset", raised))
	return nil
}

// aheadError is the error of a read after cursor c, which is ahead of the
// read horizon. The horizon never moves back, so c was not read from this
// log as it is: the database is a restore of a dump (or a recovery) that
// was made before c was read, and records stored since may sort before c.
func aheadError(c store.Cursor) error {
	return fmt.Errorf("%w: cursor %s is ahead of the log's read horizon: the database was restored, or recovered to an earlier point, after the cursor was read; "+
		"restart the processes that use the store, to go on from the checkpoints stored in the database", store.ErrInvalidCursor, truncate(string(c), 64))
}
