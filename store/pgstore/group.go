package pgstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ncore-io/event/internal/decode"
	"github.com/ncore-io/event/store"
)

// Consumer groups keep their members and partitions in two tables. Lease
// times are the database's clock (now(), the claiming transaction's
// start), so the hosts of a group need not agree on the time. Concurrent
// claims lock the free partitions they take with FOR UPDATE SKIP LOCKED:
// two members never take one partition, and neither waits for the other.

// Partitions implements [store.Grouper]: the count stored in the schema.
func (s *Store) Partitions() int { return s.partitions }

// Claim implements [store.Grouper].
func (s *Store) Claim(ctx context.Context, group, member string, ttl time.Duration) (store.Assignment, error) {
	if err := store.ValidateClaim(group, member, ttl); err != nil {
		return store.Assignment{}, fmt.Errorf("pgstore: claim: %w", err)
	}
	if err := s.enter("claim"); err != nil {
		return store.Assignment{}, err
	}
	defer s.exit()
	if err := s.indexPartitions(ctx); err != nil {
		return store.Assignment{}, fmt.Errorf("pgstore: claim %s: %w", group, err)
	}
	// A whole microsecond at least, rounded up, so that the lease is no
	// shorter than asked.
	us := (ttl + time.Microsecond - 1).Microseconds()
	var a store.Assignment
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "INSERT INTO "+s.schema+".group_members (grp, member, expires) VALUES ($1, $2, now() + $3 * interval '1 microsecond') "+
			"ON CONFLICT (grp, member) DO UPDATE SET expires = excluded.expires", group, member, us); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM "+s.schema+".group_members WHERE grp = $1 AND expires < now()", group); err != nil {
			return err
		}
		// The member's rank among the live members, by the byte order of
		// their IDs (collation "C", whatever the database's), decides
		// whether its share is the larger of the two.
		var rank int
		if err := tx.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE member < $2 COLLATE \"C\") FROM "+s.schema+".group_members WHERE grp = $1",
			group, member).Scan(&a.Members, &rank); err != nil {
			return err
		}
		// A new group starts where a subscription of its name had got to.
		if _, err := tx.Exec(ctx, "INSERT INTO "+s.schema+".group_partitions (grp, part, cursor) "+
			"SELECT $1, g, coalesce((SELECT cursor FROM "+s.schema+".checkpoints WHERE name = $1), '') FROM generate_series(0, $2::int - 1) AS g "+
			"WHERE (SELECT count(*) FROM "+s.schema+".group_partitions WHERE grp = $1) < $2 "+
			"ON CONFLICT (grp, part) DO NOTHING", group, s.partitions); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "UPDATE "+s.schema+".group_partitions SET expires = now() + $3 * interval '1 microsecond' WHERE grp = $1 AND owner = $2", group, member, us)
		if err != nil {
			return err
		}
		a.Share = store.MemberShare(s.partitions, a.Members, rank)
		var taken map[int]bool // partition: taken from a member that did not release it
		if owned := int(tag.RowsAffected()); owned < a.Share {
			rows, err := tx.Query(ctx, "WITH t AS (SELECT part, owner AS prev FROM "+s.schema+".group_partitions WHERE grp = $1 AND (owner = '' OR expires < now()) "+
				"ORDER BY part LIMIT $4 FOR UPDATE SKIP LOCKED) "+
				"UPDATE "+s.schema+".group_partitions AS p SET owner = $2, token = p.token + 1, expires = now() + $3 * interval '1 microsecond' "+
				"FROM t WHERE p.grp = $1 AND p.part = t.part RETURNING p.part, t.prev <> ''", group, member, us, a.Share-owned)
			if err != nil {
				return err
			}
			taken = map[int]bool{}
			var p int
			var over bool
			if _, err := pgx.ForEachRow(rows, []any{&p, &over}, func() error { taken[p] = over; return nil }); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, "SELECT part, token, cursor FROM "+s.schema+".group_partitions WHERE grp = $1 AND owner = $2 ORDER BY part", group, member)
		if err != nil {
			return err
		}
		a.Leases, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Lease, error) {
			var l store.Lease
			var c string
			err := row.Scan(&l.Partition, &l.Token, &c)
			l.Cursor = store.Cursor(c)
			l.TakenOver = taken[l.Partition]
			return l, err
		})
		return err
	})
	if err != nil {
		return store.Assignment{}, fmt.Errorf("pgstore: claim %s: %w", group, err)
	}
	return a, nil
}

// indexLock, after the schema's name, keys the advisory lock that the
// partition index is built under (see indexPartitions).
const indexLock = "\x00events_part"

// indexPartitions makes the index that partition reads scan, at the first
// claim on a schema rather than with it: keeping it up costs every append,
// which a log that no group reads should not pay. It is built
// CONCURRENTLY, so appends go on meanwhile, and under an advisory lock of
// its own, so that it is built once. A claim that finds the lock taken
// goes on without waiting (waiting in a statement would deadlock with the
// build, which waits for the transactions begun before its last phase),
// and the next claim looks again. The lock is not the migration's: a
// store being opened meanwhile would wait for it inside its migration's
// transaction, which the build waits for, and PostgreSQL would fail one
// of the two as a deadlock. An index left invalid by a build that failed
// is dropped and built again.
func (s *Store) indexPartitions(ctx context.Context) error {
	if s.partIndexed.Load() {
		return nil
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("index partitions: %w", err)
	}
	defer conn.Release()
	index := s.schema + ".events_part"
	const state = "SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1))"
	var valid *bool
	if err := conn.QueryRow(ctx, state, index).Scan(&valid); err != nil {
		return fmt.Errorf("index partitions: %w", err)
	}
	if valid != nil && *valid {
		s.partIndexed.Store(true)
		return nil
	}
	var locked bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lockKey(s.opts.schema+indexLock)).Scan(&locked); err != nil {
		return fmt.Errorf("index partitions: lock: %w", err)
	}
	if !locked {
		return nil // another claim is building it
	}
	defer func() {
		// A session lock outlives errors; a connection that cannot unlock
		// is closed, which unlocks.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey(s.opts.schema+indexLock)); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	if err := conn.QueryRow(ctx, state, index).Scan(&valid); err != nil { // again, under the lock
		return fmt.Errorf("index partitions: %w", err)
	}
	if valid != nil && !*valid {
		if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+index); err != nil {
			return fmt.Errorf("index partitions: drop the invalid index: %w", err)
		}
	}
	if valid == nil || !*valid {
		if _, err := conn.Exec(ctx, "CREATE INDEX CONCURRENTLY IF NOT EXISTS events_part ON "+s.schema+".events (part, txid, position)"); err != nil {
			return fmt.Errorf("index partitions: %w", err)
		}
	}
	s.partIndexed.Store(true)
	return nil
}

// Release implements [store.Grouper].
func (s *Store) Release(ctx context.Context, group, member string, partitions ...int) error {
	if err := store.ValidateClaim(group, member, 1); err != nil {
		return fmt.Errorf("pgstore: release: %w", err)
	}
	ps := make([]int32, len(partitions))
	for i, p := range partitions {
		if err := store.ValidatePartition(p, s.partitions); err != nil {
			return fmt.Errorf("pgstore: release: %w", err)
		}
		ps[i] = int32(p)
	}
	if err := s.enter("release"); err != nil {
		return err
	}
	defer s.exit()
	b := &pgx.Batch{}
	if len(partitions) == 0 {
		b.Queue("DELETE FROM "+s.schema+".group_members WHERE grp = $1 AND member = $2", group, member)
		b.Queue("UPDATE "+s.schema+".group_partitions SET owner = '', expires = '-infinity' WHERE grp = $1 AND owner = $2", group, member)
	} else {
		b.Queue("UPDATE "+s.schema+".group_partitions SET owner = '', expires = '-infinity' WHERE grp = $1 AND owner = $2 AND part = ANY($3)", group, member, ps)
	}
	// A batch runs as one implicit transaction.
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pgstore: release %s: %w", group, err)
	}
	return nil
}

// Commit implements [store.Grouper], in one statement when every lease
// holds. When some do not, a second statement finds which: a lease lost
// after the first one counts as lost too, though its checkpoint was saved.
func (s *Store) Commit(ctx context.Context, group, member string, cps ...store.Checkpoint) error {
	if err := store.ValidateClaim(group, member, 1); err != nil {
		return fmt.Errorf("pgstore: commit: %w", err)
	}
	for _, cp := range cps {
		if err := store.ValidatePartition(cp.Partition, s.partitions); err != nil {
			return fmt.Errorf("pgstore: commit: %w", err)
		}
		if _, err := s.parseCursor(cp.Cursor); err != nil {
			return fmt.Errorf("pgstore: commit: partition %d: %w", cp.Partition, err)
		}
	}
	if err := s.enter("commit"); err != nil {
		return err
	}
	defer s.exit()
	tag, err := s.saveCheckpoints(ctx, group, member, cps)
	if err != nil {
		return fmt.Errorf("pgstore: commit %s: %w", group, err)
	}
	if tag.RowsAffected() == int64(len(cps)) {
		return nil
	}
	parts, tokens := make([]int32, len(cps)), make([]int64, len(cps))
	for i, cp := range cps {
		parts[i], tokens[i] = int32(cp.Partition), cp.Token
	}
	rows, err := s.pool.Query(ctx, s.sql.unheld, group, member, parts, tokens)
	if err != nil {
		return fmt.Errorf("pgstore: commit %s: %w", group, err)
	}
	lost, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return fmt.Errorf("pgstore: commit %s: %w", group, err)
	}
	if len(lost) > 0 {
		return fmt.Errorf("pgstore: commit: %w", &store.LeaseLostError{Group: group, Member: member, Partitions: lost})
	}
	return nil
}

// ReadPartitions implements [store.Grouper]. It reads below the horizon,
// as Read does (see there), in one statement: the schema's function
// read_partitions (migration 6) takes the horizon, the bounds and the
// page in three queries, each with a snapshot taken after the one before
// ended. Each partition's first limit keys after its cursor come from the
// (part, txid, position) index, and the first limit of those in global
// order are read. When a connection's transactions are not READ
// COMMITTED, in which the function's queries would share one snapshot,
// the call runs in a READ COMMITTED transaction of its own.
//
// The partitions are sent as one cursor, the one most of them are at,
// with a bitmap of those partitions, and the others each with its own
// cursor. A member at light load has nearly all its partitions at one
// place, the end of the log, so a read sends a few bytes.
//
// It goes through pgconn and decodes the binary rows itself (see rows.go):
// a member at light load reads once per event.
func (s *Store) ReadPartitions(ctx context.Context, from []store.PartitionCursor, limit int) ([]store.Record, error) {
	if err := s.enter("read partitions"); err != nil {
		return nil, err
	}
	defer s.exit()
	limit, err := store.PageLimit(limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: read partitions: %w", err)
	}
	n := len(from)
	sc := groupReads.Get().(*groupRead)
	defer groupReads.Put(sc)
	afters := slices.Grow(sc.keys[:0], n)[:n]
	sc.keys = afters
	for i, f := range from {
		if err := store.ValidatePartition(f.Partition, s.partitions); err != nil {
			return nil, fmt.Errorf("pgstore: read partitions: %w", err)
		}
		if i > 0 && f.After == from[i-1].After {
			afters[i] = afters[i-1] // partitions at one place share a cursor
			continue
		}
		if afters[i], err = s.parseCursor(f.After); err != nil {
			return nil, fmt.Errorf("pgstore: read partitions: %w", err)
		}
	}
	if n == 0 {
		return nil, nil
	}
	sc.encode(afters, from, s.partitions, limit)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: read partitions: %w", err)
	}
	defer conn.Release()
	out, b, err := s.readGroup(ctx, conn.Conn(), sc.params[:])
	if err != nil {
		return nil, fmt.Errorf("pgstore: read partitions: %w", err)
	}
	s.hiddenFound(b.hidden)
	for i, a := range afters {
		if a.txid > b.horizon {
			return nil, fmt.Errorf("pgstore: read partition %d: %w", from[i].Partition, aheadError(from[i].After))
		}
		if a != (key{}) && a.less(b.low) {
			return nil, fmt.Errorf("pgstore: read partition %d: %w", from[i].Partition, store.ErrCursorExpired)
		}
	}
	// A full page covered the log up to its last record; a short one, up
	// to the log's last record below the horizon (or the retention
	// watermark, if retention deleted every record): any record that comes
	// later is of a transaction that had not ended when the horizon was
	// taken, and so comes after it. Not up to the horizon itself: a crash
	// of the server hands out again the transaction IDs that ended without
	// their WAL reaching the disk, which may be below the horizon, and a
	// reader that outlives the crash with a cursor there would pass over
	// the records of a transaction that gets one (or, now that a cursor
	// ahead of the horizon is refused, stop). A stored record's
	// transaction ID never comes back, as its commit is on disk.
	covered := b.end
	if b.end.less(b.low) {
		covered = b.low
	}
	if len(out) == limit {
		covered = b.last
	}
	var to store.Cursor // covered's, made once for every partition it moves
	for i, a := range afters {
		if a.less(covered) {
			if to == "" {
				to = s.cursor(covered)
			}
			from[i].After = to
		}
	}
	return out, nil
}

// groupBounds are what a read of partitions learns besides its records:
// the horizon, the retention watermark (low), the log's last record below
// the horizon (end), whether records lie hidden past the horizon, and the
// page's last record.
type groupBounds struct {
	horizon        uint64
	low, end, last key
	hidden         bool
}

// readGroup runs read_partitions with params on conn. The first call on a connection prepares the statement
// (pgx keeps it for the connection's life).
func (s *Store) readGroup(ctx context.Context, conn *pgx.Conn, params [][]byte) ([]store.Record, groupBounds, error) {
	pc := conn.PgConn()
	if !s.groupReadTx.Load() {
		rr, err := s.execBinary(ctx, conn, s.sql.readPartitions, params, binaryFormat)
		if err != nil {
			return nil, groupBounds{}, err
		}
		out, b, err := s.decodeGroupRead(rr)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != notReadCommitted {
			s.forgetStatement(ctx, conn, s.prepare, s.sql.readPartitions, err)
			return out, b, err
		}
		// This connection's transactions are of a stricter isolation,
		// and likely all the pool's: from now on, read in a transaction.
		s.groupReadTx.Store(true)
	}
	// A failure inside the transaction leaves the connection in it, which
	// the pool then closes rather than reuses.
	if err := pc.Exec(ctx, "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY").Close(); err != nil {
		return nil, groupBounds{}, err
	}
	rr, err := s.execBinary(ctx, conn, s.sql.readPartitions, params, binaryFormat)
	if err != nil {
		return nil, groupBounds{}, err
	}
	out, b, err := s.decodeGroupRead(rr)
	if err != nil {
		s.forgetStatement(ctx, conn, s.prepare, s.sql.readPartitions, err)
		return nil, groupBounds{}, err
	}
	if err := pc.Exec(ctx, "COMMIT").Close(); err != nil {
		return nil, groupBounds{}, err
	}
	return out, b, nil
}

// notReadCommitted is the SQLSTATE that read_partitions raises in a
// transaction that is not READ COMMITTED.
const notReadCommitted = "EV001"

// decodeGroupRead reads the rows of read_partitions: the bounds, then the
// page.
func (s *Store) decodeGroupRead(rr *pgconn.ResultReader) ([]store.Record, groupBounds, error) {
	var b groupBounds
	page := decode.GetPage()
	rows := 0
	var err error
	for rr.NextRow() && err == nil {
		v := rr.Values()
		rows++
		if rows == 1 {
			b, err = decodeGroupBounds(v)
			continue
		}
		r := page.Add() // decoded in place
		if b.last, err = s.decodeGroupRecord(v, r); err == nil {
			r.Cursor = s.cursor(b.last)
		}
	}
	if _, cerr := rr.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err == nil && rows == 0 {
		err = errors.New("read_partitions returned no bounds")
	}
	if err != nil {
		page.Discard()
		return nil, b, err
	}
	return page.Records(), b, nil
}

// decodeGroupBounds decodes the first row of read_partitions.
func decodeGroupBounds(v [][]byte) (groupBounds, error) {
	var b groupBounds
	if len(v) != groupRecordCols || v[2] != nil {
		return b, errors.New("read_partitions did not begin with its bounds")
	}
	var err error
	if b.horizon, err = decodeXid8(v[0]); err != nil {
		return b, fmt.Errorf("horizon: %w", err)
	}
	p := v[12]
	if len(p) != 33 {
		return b, fmt.Errorf("bounds of %d bytes, want 33", len(p))
	}
	b.low = key{binary.BigEndian.Uint64(p[0:]), int64(binary.BigEndian.Uint64(p[8:]))}
	b.end = key{binary.BigEndian.Uint64(p[16:]), int64(binary.BigEndian.Uint64(p[24:]))}
	b.hidden = p[32] != 0
	return b, nil
}

// groupRead is the scratch space of a ReadPartitions call: the parsed
// cursors and the encoded parameters.
type groupRead struct {
	keys   []key
	buf    []byte
	params [7][]byte
}

var groupReads = sync.Pool{New: func() any { return new(groupRead) }}

// encode sets the parameters of read_partitions (in binary): the cursor
// most partitions are at, the bitmap of those partitions, the others with
// their cursors, and the limit.
func (g *groupRead) encode(afters []key, from []store.PartitionCursor, partitions, limit int) {
	base := majority(afters)
	others := 0
	for _, a := range afters {
		if a != base {
			others++
		}
	}
	buf := g.buf[:0]
	// Offsets into buf, cut into params once buf has stopped growing.
	var at [8]int
	at[0] = len(buf)
	buf = binary.BigEndian.AppendUint64(buf, base.txid)
	at[1] = len(buf)
	buf = binary.BigEndian.AppendUint64(buf, uint64(base.pos))
	at[2] = len(buf)
	bits := len(buf)
	buf = append(buf, make([]byte, (partitions+7)/8)...)
	for i, a := range afters {
		if a == base {
			p := from[i].Partition
			buf[bits+p/8] |= 1 << (p % 8)
		}
	}
	at[3] = len(buf)
	buf = appendArrayHeader(buf, oidInt4, others)
	for i, a := range afters {
		if a != base {
			buf = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(buf, 4), uint32(from[i].Partition))
		}
	}
	at[4] = len(buf)
	buf = appendArrayHeader(buf, oidXid8, others)
	for _, a := range afters {
		if a != base {
			buf = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(buf, 8), a.txid)
		}
	}
	at[5] = len(buf)
	buf = appendArrayHeader(buf, oidInt8, others)
	for _, a := range afters {
		if a != base {
			buf = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(buf, 8), uint64(a.pos))
		}
	}
	at[6] = len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(limit))
	at[7] = len(buf)
	for i := range g.params {
		g.params[i] = buf[at[i]:at[i+1]:at[i+1]]
	}
	g.buf = buf
}

// majority returns the key that more than half of keys are, if one is
// (Boyer and Moore's vote), and otherwise one of them.
func majority(keys []key) key {
	var m key
	votes := 0
	for _, k := range keys {
		switch {
		case votes == 0:
			m, votes = k, 1
		case k == m:
			votes++
		default:
			votes--
		}
	}
	return m
}

// saveCheckpoints runs the commit statement through pgconn with its
// parameters encoded here, in binary: a member commits every 100 events,
// its arrays a few kilobytes, which pgx's encoding allocates several
// times over.
func (s *Store) saveCheckpoints(ctx context.Context, group, member string, cps []store.Checkpoint) (pgconn.CommandTag, error) {
	sc := groupReads.Get().(*groupRead)
	defer groupReads.Put(sc)
	buf := sc.buf[:0]
	var at [6]int
	at[0] = len(buf)
	buf = append(buf, group...)
	at[1] = len(buf)
	buf = append(buf, member...)
	at[2] = len(buf)
	buf = appendArrayHeader(buf, oidInt4, len(cps))
	for _, cp := range cps {
		buf = binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(buf, 4), uint32(cp.Partition))
	}
	at[3] = len(buf)
	buf = appendArrayHeader(buf, oidInt8, len(cps))
	for _, cp := range cps {
		buf = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint32(buf, 8), uint64(cp.Token))
	}
	at[4] = len(buf)
	buf = appendArrayHeader(buf, oidText, len(cps))
	for _, cp := range cps {
		buf = append(binary.BigEndian.AppendUint32(buf, uint32(len(cp.Cursor))), cp.Cursor...)
	}
	at[5] = len(buf)
	sc.params = [7][]byte{}
	for i := range 5 {
		sc.params[i] = buf[at[i]:at[i+1]:at[i+1]]
	}
	sc.buf = buf
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer conn.Release()
	rr, err := s.execBinary(ctx, conn.Conn(), s.sql.commit, sc.params[:5], nil)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := rr.Close()
	s.forgetStatement(ctx, conn.Conn(), s.prepare, s.sql.commit, err)
	return tag, err
}

// forgetStatement makes conn prepare the statements of execBinary and
// execAppend again when err says the server has lost them (26000, after
// DISCARD ALL or a pooler's reset) or that sql's plan no longer fits
// (0A000, after the function it calls was redefined): pgx drops its own
// cached statements on such errors, but not those prepared by name, and
// every later call on the connection would fail the same way. A server
// that lost one statement lost them all: outside a transaction the
// connection forgets every one (pgx's own included); inside one, which
// the error may have aborted, it forgets sql's. The next call prepares
// them again. prepared says whether conn prepares statements (see
// execBinary); one that does not has nothing to forget.
func (s *Store) forgetStatement(ctx context.Context, conn *pgx.Conn, prepared bool, sql string, err error) {
	var pgErr *pgconn.PgError
	if !prepared || !errors.As(err, &pgErr) || (pgErr.Code != "26000" && pgErr.Code != "0A000") {
		return
	}
	ctx = context.WithoutCancel(ctx)
	forget := func() error { return conn.Deallocate(ctx, sql) }
	if pgErr.Code == "26000" && conn.PgConn().TxStatus() == 'I' {
		forget = func() error { return conn.DeallocateAll(ctx) }
	}
	if forget() != nil {
		conn.Close(ctx) // the pool then replaces it
	}
}

// execBinary runs sql on conn with params in binary, the results in the
// given formats. Where the pool's connections keep prepared statements
// (pgx's default mode, QueryExecModeCacheStatement) it prepares sql once and
// executes it by name, which costs no parsing and, with up to 16
// columns, no allocation for the result's description. In the other
// modes, which are for poolers that do not keep statements between
// transactions, it sends sql with its parameters as an unnamed statement,
// still one round trip. The statement is named by its SQL's hash, as pgx
// names a statement that Prepare is given by its SQL. pgx's Query and Exec
// run a statement so prepared when given its SQL (the append's careful
// path does); an error there is not forgotten, and the next call here
// fails on it once more and forgets it.
func (s *Store) execBinary(ctx context.Context, conn *pgx.Conn, sql string, params [][]byte, results []int16) (*pgconn.ResultReader, error) {
	if !s.prepare {
		return conn.PgConn().ExecParams(ctx, sql, params, nil, binaryFormat, results), nil
	}
	sd, err := conn.Prepare(ctx, sql, sql)
	if err != nil {
		return nil, err
	}
	return conn.PgConn().ExecStatement(ctx, sd, params, binaryFormat, results), nil
}

// Group implements [store.Grouper].
func (s *Store) Group(ctx context.Context, group string) (store.GroupInfo, error) {
	if err := store.ValidateName("group name", group); err != nil {
		return store.GroupInfo{}, fmt.Errorf("pgstore: group: %w", err)
	}
	if err := s.enter("group"); err != nil {
		return store.GroupInfo{}, err
	}
	defer s.exit()
	info := store.GroupInfo{Name: group}
	fail := func(err error) (store.GroupInfo, error) {
		return store.GroupInfo{}, fmt.Errorf("pgstore: group %s: %w", group, err)
	}
	rows, err := s.pool.Query(ctx, "SELECT part, CASE WHEN expires >= now() THEN owner ELSE '' END, CASE WHEN expires >= now() THEN expires END, cursor "+
		"FROM "+s.schema+".group_partitions WHERE grp = $1 ORDER BY part", group)
	if err != nil {
		return fail(err)
	}
	info.Partitions, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.PartitionInfo, error) {
		var p store.PartitionInfo
		var exp *time.Time
		var c string
		err := row.Scan(&p.Partition, &p.Owner, &exp, &c)
		if exp != nil {
			p.Expires = exp.UTC()
		}
		p.Cursor = store.Cursor(c)
		return p, err
	})
	if err != nil {
		return fail(err)
	}
	held := map[string]int{}
	if len(info.Partitions) > 0 {
		ps, txs, poss := make([]int32, 0, len(info.Partitions)), make([]uint64, 0, len(info.Partitions)), make([]int64, 0, len(info.Partitions))
		for _, p := range info.Partitions {
			k, err := s.parseCursor(p.Cursor)
			if err != nil {
				return fail(err)
			}
			ps, txs, poss = append(ps, int32(p.Partition)), append(txs, k.txid), append(poss, k.pos)
			if p.Owner != "" {
				held[p.Owner]++
			}
		}
		rows, err := s.pool.Query(ctx, "SELECT (SELECT count(*) FROM "+s.schema+".events AS e WHERE e.part = c.p AND (e.txid, e.position) > (c.tx, c.pos)) "+
			"FROM unnest($1::int[], $2::xid8[], $3::bigint[]) WITH ORDINALITY AS c(p, tx, pos, i) ORDER BY c.i", ps, txs, poss)
		if err != nil {
			return fail(err)
		}
		lags, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fail(err)
		}
		for i := range lags {
			info.Partitions[i].Lag = lags[i]
		}
	}
	rows, err = s.pool.Query(ctx, "SELECT member, expires FROM "+s.schema+".group_members WHERE grp = $1 AND expires >= now() ORDER BY member", group)
	if err != nil {
		return fail(err)
	}
	info.Members, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.MemberInfo, error) {
		var m store.MemberInfo
		err := row.Scan(&m.ID, &m.Expires)
		m.Expires = m.Expires.UTC()
		m.Partitions = held[m.ID]
		return m, err
	})
	if err != nil {
		return fail(err)
	}
	return info, nil
}
