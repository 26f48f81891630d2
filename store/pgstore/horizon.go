package pgstore

import (
	"context"
	"fmt"
)

// horizonSQL returns the statement that computes the read horizon H of
// the log in schema: every transaction of this database whose key (its ID
// through log_xid, see migration 4) is below H has ended, and every later
// one gets a key of at least H. Records with txid < H are therefore final:
// none can appear among them any more, and a statement that starts after
// this one ends sees them all.
//
// The textbook horizon is pg_snapshot_xmin, the oldest transaction running
// anywhere in the cluster. But transactions in other databases cannot write
// this table, and counting them would let an open transaction in any
// database stall every reader here. So H is the key of the oldest
// transaction in a snapshot's in-progress list (xip) that
// pg_stat_get_activity shows running in this database, or is prepared
// (two-phase) here; if there is none, of the snapshot's xmax. The activity
// is read after the snapshot was taken, so a transaction of the snapshot
// missing from it has ended by then, which is before the reading statement
// takes its own snapshot. Backend transaction IDs are 32 bits, hence the
// modulo; PostgreSQL shows them and the database to every role. The
// activity is read once per transaction (PostgreSQL keeps what a
// transaction first read of it), so a transaction computes H once.
//
// The computation is the schema's function read_horizon (migration 6),
// whose query takes its snapshot after the calling statement's, so that
// ReadPartitions' single statement can compute H and then read below it.
//
// H never moves back while the offset of log_xid stays, and raising the
// offset moves it on; so a cursor above H was not read from this log as
// it is (see aheadError).
func horizonSQL(schema string) string {
	return "SELECT " + schema + ".read_horizon()"
}

// horizon returns H (see horizonSQL). The statement that uses it must start
// after this returns.
func (s *Store) horizon(ctx context.Context) (uint64, error) {
	var h uint64
	if err := s.pool.QueryRow(ctx, s.sql.horizon).Scan(&h); err != nil {
		return 0, fmt.Errorf("read horizon: %w", err)
	}
	return h, nil
}

// hiddenSQL is true when the log holds records, committed, that a read
// below the horizon leaves out: those of transactions that ended after
// an older one still running began. No NOTIFY comes when that older one
// ends (unless it appended), so a reader that waits for signals would
// wait for its next poll to read them; see Store.hiddenFound. The scan
// starts past the horizon, so the running transaction that holds it back,
// however much it wrote, is not looked at. It is written as the first
// record in index order rather than EXISTS, which the planner, guessing a
// third of the log to match, would answer with a scan of the table.
func hiddenSQL(schema string) string {
	return "coalesce((SELECT true FROM " + schema + ".events WHERE txid > current_setting('" + horizonGUC + "')::xid8 ORDER BY txid, position LIMIT 1), false)"
}
