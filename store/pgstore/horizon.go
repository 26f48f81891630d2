package pgstore

// horizonCTE computes the read horizon once per statement, as the CTE h
// with one column x (xid8): every transaction of this database whose ID is
// below x has ended, and every later one gets an ID of at least x. Records
// with txid < x are therefore final: none can still appear among them.
//
// The plain answer is pg_snapshot_xmin of the statement's snapshot, the
// oldest transaction running anywhere in the cluster. But transactions in
// other databases cannot write this table, and counting them would let an
// open transaction in any database stall every reader here. So the horizon
// is the oldest transaction in the snapshot's in-progress list (xip) that
// is not known to belong to another database, or the snapshot's xmax if
// there is none. pg_stat_get_activity reports each backend's database and
// current transaction ID (32 bits, hence the modulo). It is read after the
// snapshot was taken, which errs on the safe side: a transaction that ended
// in between is no longer listed and so counts as ours, holding the horizon
// back for this one statement. Prepared transactions, backends whose
// transaction IDs the role may not see, and anything else unidentified also
// count as ours, which degrades to the cluster-wide xmin, never to a gap.
const horizonCTE = `h AS MATERIALIZED (
	SELECT coalesce((
		SELECT t.x FROM pg_snapshot_xip(pg_current_snapshot()) AS t(x)
		WHERE t.x::text::bigint % 4294967296 NOT IN (
			SELECT a.backend_xid::text::bigint FROM pg_stat_get_activity(NULL) AS a
			WHERE a.backend_xid IS NOT NULL
			  AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))
		ORDER BY t.x LIMIT 1
	), pg_snapshot_xmax(pg_current_snapshot())) AS x
)`
