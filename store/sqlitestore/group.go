package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ncore-io/event/internal/decode"
	"github.com/ncore-io/event/store"
)

// Consumer groups keep their members and partitions in two tables, written
// through the writer connection in IMMEDIATE transactions: the processes
// sharing the file take turns, so a claim sees every other member's. Lease
// times are Unix microseconds of the claiming process's clock, which all
// processes on one host share.

var _ store.Grouper = (*Store)(nil)

// Partitions implements [store.Grouper]: the count stored in the file.
func (s *Store) Partitions() int { return s.cfg.partitions }

// Claim implements [store.Grouper].
func (s *Store) Claim(ctx context.Context, group, member string, ttl time.Duration) (store.Assignment, error) {
	if err := store.ValidateClaim(group, member, ttl); err != nil {
		return store.Assignment{}, fmt.Errorf("sqlitestore: claim: %w", err)
	}
	if err := s.enter(ctx, "claim"); err != nil {
		return store.Assignment{}, err
	}
	var a store.Assignment
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if err := s.indexPartitions(ctx, tx); err != nil {
			return err
		}
		// The lease starts once the claim holds the write lock, not when
		// it began to wait for it.
		now := time.Now()
		nowUS, expUS := now.UnixMicro(), now.Add(ttl).UnixMicro()
		a = store.Assignment{}
		if _, err := tx.ExecContext(ctx, `INSERT INTO event_group_members (grp, member, expires_us, host, pid) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (grp, member) DO UPDATE SET expires_us = excluded.expires_us, host = excluded.host, pid = excluded.pid`, group, member, expUS, thisHost, os.Getpid()); err != nil {
			return err
		}
		if err := dropExited(ctx, tx, group); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM event_group_members WHERE grp = ? AND expires_us < ?`, group, nowUS); err != nil {
			return err
		}
		// The member's rank among the live members, by the byte order of
		// their IDs (BINARY collation), decides whether its share is the
		// larger of the two.
		var rank int
		if err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(member < ?), 0) FROM event_group_members WHERE grp = ?`, member, group).Scan(&a.Members, &rank); err != nil {
			return err
		}
		// A new group starts where a subscription of its name had got to.
		if _, err := tx.ExecContext(ctx, `WITH RECURSIVE p(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM p WHERE n + 1 < ?)
			INSERT INTO event_group_partitions (grp, part, cursor)
			SELECT ?, n, coalesce((SELECT cursor FROM event_checkpoints WHERE name = ?), '') FROM p
			WHERE (SELECT count(*) FROM event_group_partitions WHERE grp = ?) < ?
			ON CONFLICT (grp, part) DO NOTHING`, s.cfg.partitions, group, group, group, s.cfg.partitions); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE event_group_partitions SET expires_us = ? WHERE grp = ? AND owner = ?`, expUS, group, member); err != nil {
			return err
		}
		a.Share = store.MemberShare(s.cfg.partitions, a.Members, rank)
		var owned int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM event_group_partitions WHERE grp = ? AND owner = ?`, group, member).Scan(&owned); err != nil {
			return err
		}
		var taken map[int]bool // partition: taken from a member that did not release it
		if owned < a.Share {
			free, err := tx.QueryContext(ctx, `SELECT part, owner FROM event_group_partitions WHERE grp = ? AND (owner = '' OR expires_us < ?) ORDER BY part LIMIT ?`,
				group, nowUS, a.Share-owned)
			if err != nil {
				return err
			}
			taken = map[int]bool{}
			for free.Next() {
				var p int
				var prev string
				if err := free.Scan(&p, &prev); err != nil {
					free.Close()
					return err
				}
				taken[p] = prev != ""
			}
			if err := errors.Join(free.Err(), free.Close()); err != nil {
				return err
			}
			// The same partitions: nothing else writes in this transaction.
			if _, err := tx.ExecContext(ctx, `UPDATE event_group_partitions SET owner = ?, token = token + 1, expires_us = ?
				WHERE grp = ? AND part IN (SELECT part FROM event_group_partitions WHERE grp = ? AND (owner = '' OR expires_us < ?) ORDER BY part LIMIT ?)`,
				member, expUS, group, group, nowUS, a.Share-owned); err != nil {
				return err
			}
		}
		rows, err := tx.QueryContext(ctx, `SELECT part, token, cursor FROM event_group_partitions WHERE grp = ? AND owner = ? ORDER BY part`, group, member)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l store.Lease
			var c string
			if err := rows.Scan(&l.Partition, &l.Token, &c); err != nil {
				return err
			}
			l.Cursor = store.Cursor(c)
			l.TakenOver = taken[l.Partition]
			a.Leases = append(a.Leases, l)
		}
		return rows.Err()
	})
	if err != nil {
		return store.Assignment{}, s.fail(ctx, "claim "+group, err)
	}
	s.partIndexed.Store(true)
	return a, nil
}

// Release implements [store.Grouper].
func (s *Store) Release(ctx context.Context, group, member string, partitions ...int) error {
	if err := store.ValidateClaim(group, member, 1); err != nil {
		return fmt.Errorf("sqlitestore: release: %w", err)
	}
	for _, p := range partitions {
		if err := store.ValidatePartition(p, s.cfg.partitions); err != nil {
			return fmt.Errorf("sqlitestore: release: %w", err)
		}
	}
	if err := s.enter(ctx, "release"); err != nil {
		return err
	}
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if len(partitions) == 0 {
			if _, err := tx.ExecContext(ctx, `DELETE FROM event_group_members WHERE grp = ? AND member = ?`, group, member); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `UPDATE event_group_partitions SET owner = '', expires_us = 0 WHERE grp = ? AND owner = ?`, group, member)
			return err
		}
		for _, p := range partitions {
			if _, err := tx.ExecContext(ctx, `UPDATE event_group_partitions SET owner = '', expires_us = 0 WHERE grp = ? AND owner = ? AND part = ?`, group, member, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.fail(ctx, "release "+group, err)
	}
	return nil
}

// Commit implements [store.Grouper].
func (s *Store) Commit(ctx context.Context, group, member string, cps ...store.Checkpoint) error {
	if err := store.ValidateClaim(group, member, 1); err != nil {
		return fmt.Errorf("sqlitestore: commit: %w", err)
	}
	for _, cp := range cps {
		if err := store.ValidatePartition(cp.Partition, s.cfg.partitions); err != nil {
			return fmt.Errorf("sqlitestore: commit: %w", err)
		}
		if _, err := decodeCursor(cp.Cursor); err != nil {
			return fmt.Errorf("sqlitestore: commit: partition %d: %w", cp.Partition, err)
		}
	}
	if err := s.enter(ctx, "commit"); err != nil {
		return err
	}
	// One statement for all the checkpoints, given as a JSON array of
	// [partition, token, cursor]; it returns the partitions whose lease
	// held. (A statement per checkpoint cost a member a few hundred bytes
	// per event at light load, in database/sql and the driver.)
	list := make([]byte, 0, 2+len(cps)*32)
	list = append(list, '[')
	for i, cp := range cps {
		if i > 0 {
			list = append(list, ',')
		}
		list = append(list, '[')
		list = strconv.AppendInt(list, int64(cp.Partition), 10)
		list = append(list, ',')
		list = strconv.AppendInt(list, cp.Token, 10)
		list = append(list, ',', '"')
		list = append(list, cp.Cursor...) // a cursor is digits after a letter: no escapes
		list = append(list, '"', ']')
	}
	list = append(list, ']')
	var lost []int
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE event_group_partitions AS g SET cursor = c.value ->> 2 FROM json_each(?) AS c
			WHERE g.grp = ? AND g.owner = ? AND g.part = c.value ->> 0 AND g.token = c.value ->> 1 RETURNING part`, string(list), group, member)
		if err != nil {
			return err
		}
		held := make(map[int]bool, len(cps))
		for rows.Next() {
			var p int
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return err
			}
			held[p] = true
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		lost = lost[:0]
		for _, cp := range cps {
			if !held[cp.Partition] {
				lost = append(lost, cp.Partition)
			}
		}
		return nil
	})
	if err != nil {
		return s.fail(ctx, "commit "+group, err)
	}
	if len(lost) > 0 {
		return fmt.Errorf("sqlitestore: commit: %w", &store.LeaseLostError{Group: group, Member: member, Partitions: lost})
	}
	return nil
}

// maxCompound is how many partitions one statement of ReadPartitions
// reads, a term of a compound SELECT each: SQLite allows 500 terms
// (SQLITE_MAX_COMPOUND_SELECT).
const maxCompound = 500

// ReadPartitions implements [store.Grouper]. Each partition's first
// limit positions after its cursor come from the (part, position) index,
// without touching the records; the first limit of those in global order
// are then read, in one read transaction. Up to maxCompound partitions
// take one statement; more take one statement of positions per
// maxCompound, whose positions are merged, and one that reads the first
// limit of them.
func (s *Store) ReadPartitions(ctx context.Context, from []store.PartitionCursor, limit int) ([]store.Record, error) {
	if err := s.enter(ctx, "read partitions"); err != nil {
		return nil, err
	}
	limit, err := store.PageLimit(limit)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: read partitions: %w", err)
	}
	afters := make([]int64, len(from))
	for i, f := range from {
		if err := store.ValidatePartition(f.Partition, s.cfg.partitions); err != nil {
			return nil, fmt.Errorf("sqlitestore: read partitions: %w", err)
		}
		if afters[i], err = decodeCursor(f.After); err != nil {
			return nil, fmt.Errorf("sqlitestore: read partitions: %w", err)
		}
	}
	if len(from) == 0 {
		return nil, nil
	}
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, s.fail(ctx, "read partitions", err)
	}
	defer tx.Rollback()
	// The log's last position, from the log itself when it has records
	// (a log it cannot read is a read error, not a bad cursor).
	var low, end int64
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT value FROM event_meta WHERE key = 'low_watermark'),
		max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'event_log'), 0), coalesce((SELECT max(position) FROM event_log), 0))`).Scan(&low, &end); err != nil {
		return nil, s.fail(ctx, "read partitions", err)
	}
	for i, f := range from {
		switch after := afters[i]; {
		case after > 0 && after < low:
			return nil, fmt.Errorf("sqlitestore: read partition %d after %s: %w (records up to position %d were deleted)", f.Partition, f.After, store.ErrCursorExpired, low)
		case after > end:
			return nil, fmt.Errorf("sqlitestore: read partition %d after %s: %w: it is past the end of the log (position %d)", f.Partition, f.After, store.ErrInvalidCursor, end)
		}
	}
	var rows *sql.Rows
	if len(from) <= maxCompound {
		rows, err = s.readPartitions(ctx, tx, from, afters, limit)
	} else {
		rows, err = s.readManyPartitions(ctx, tx, from, afters, limit)
	}
	if err != nil {
		return nil, s.fail(ctx, "read partitions", err)
	}
	defer rows.Close()
	page := decode.GetPage()
	for rows.Next() {
		var w row
		var isNull bool
		if err := rows.Scan(&w.position, &w.id, &w.topic, &w.kind, &w.aggregateID, &w.version, &w.timeUS,
			&w.metadata, &w.payloadType, &w.contentType, &w.payload, &isNull, &w.part); err != nil {
			page.Discard()
			return nil, s.fail(ctx, "read partitions", err)
		}
		if w.payload == nil && !isNull {
			w.payload = []byte{}
		}
		r, err := w.record()
		if err != nil {
			page.Discard()
			return nil, s.fail(ctx, "read partitions", err)
		}
		r.Cursor = encodeCursor(r.Position)
		*page.Add() = r
	}
	if err := rows.Err(); err != nil {
		page.Discard()
		return nil, s.fail(ctx, "read partitions", err)
	}
	out := page.Records()
	// The read covered the log up to its last record, or to the end if it
	// came back short: no partition asked has a record there that it did
	// not return, and none a record it returned after. (Every position up
	// to end is settled in this snapshot.)
	covered := end
	if len(out) == limit {
		covered = out[len(out)-1].Position
	}
	var to store.Cursor // covered's, made once for every partition it moves
	for i := range from {
		if afters[i] < covered {
			if to == "" {
				to = encodeCursor(covered)
			}
			from[i].After = to
		}
	}
	return out, nil
}

// partitionTerms writes the n terms of a compound SELECT of the first
// limit positions of each partition after its cursor, whose arguments
// partitionArgs gives.
func partitionTerms(q *strings.Builder, n int) {
	for i := range n {
		if i > 0 {
			q.WriteString(` UNION ALL `)
		}
		q.WriteString(`SELECT * FROM (SELECT position FROM event_log WHERE part = ? AND position > ? ORDER BY position LIMIT ?)`)
	}
}

// partitionArgs returns the arguments of partitionTerms, appended to args.
func partitionArgs(args []any, from []store.PartitionCursor, afters []int64, limit int) []any {
	for i, f := range from {
		args = append(args, f.Partition, afters[i], limit)
	}
	return args
}

// readPartitions reads up to maxCompound partitions in one statement.
//
// When a quarter of the log's partitions or more are at one cursor, as
// nearly all of a member's are at light load (at the end of the log),
// those are read by one term: the log after that cursor in position
// order, keeping the records of a partition in a mask of them. The term
// reads at most four records per one it keeps, and a read takes a few
// arguments instead of three per partition, which database/sql converts
// one by one. The others take a term each, as when no cursor is shared.
func (s *Store) readPartitions(ctx context.Context, tx *sql.Tx, from []store.PartitionCursor, afters []int64, limit int) (*sql.Rows, error) {
	base, shared := majorityPosition(afters)
	masked := shared >= max(2, s.cfg.partitions/4)
	args := make([]any, 0, 3*len(from)+4)
	if masked {
		mask := []byte(strings.Repeat("0", s.cfg.partitions))
		for i, f := range from {
			if afters[i] == base {
				mask[f.Partition] = '1'
			}
		}
		args = append(args, base, string(mask), limit)
		rest, restAfters := make([]store.PartitionCursor, 0, len(from)-shared), make([]int64, 0, len(from)-shared)
		for i, f := range from {
			if afters[i] != base {
				rest, restAfters = append(rest, f), append(restAfters, afters[i])
			}
		}
		from, afters = rest, restAfters
	}
	args = append(partitionArgs(args, from, afters, limit), limit)
	stmt, err := s.partitionStmt(ctx, partRead{n: len(from), masked: masked}, func(q *strings.Builder) {
		q.WriteString(`SELECT ` + recordColumns + `, part FROM event_log WHERE position IN (SELECT position FROM (`)
		if masked {
			q.WriteString(`SELECT * FROM (SELECT position FROM event_log NOT INDEXED WHERE position > ? AND substr(?, part + 1, 1) = '1' ORDER BY position LIMIT ?)`)
			if len(from) > 0 {
				q.WriteString(` UNION ALL `)
			}
		}
		partitionTerms(q, len(from))
		q.WriteString(`) ORDER BY position LIMIT ?) ORDER BY position`)
	})
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, stmt).QueryContext(ctx, args...)
}

// readManyPartitions reads more than maxCompound partitions: the first
// limit positions of every maxCompound of them, merged, and then the
// records at the first limit of those. Each of the first limit positions
// of all is among the first limit of its own maxCompound, so the merge
// misses none.
func (s *Store) readManyPartitions(ctx context.Context, tx *sql.Tx, from []store.PartitionCursor, afters []int64, limit int) (*sql.Rows, error) {
	positions := make([]int64, 0, limit) // a JSON array, not null, when empty
	for i := 0; i < len(from); i += maxCompound {
		j := min(i+maxCompound, len(from))
		args := append(partitionArgs(make([]any, 0, 3*(j-i)+1), from[i:j], afters[i:j], limit), limit)
		stmt, err := s.partitionStmt(ctx, partRead{n: j - i, positions: true}, func(q *strings.Builder) {
			q.WriteString(`SELECT position FROM (`)
			partitionTerms(q, j-i)
			q.WriteString(`) ORDER BY position LIMIT ?`)
		})
		if err != nil {
			return nil, err
		}
		rows, err := tx.StmtContext(ctx, stmt).QueryContext(ctx, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var p int64
			if err := rows.Scan(&p); err != nil {
				rows.Close()
				return nil, err
			}
			positions = append(positions, p)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
	}
	slices.Sort(positions)
	positions = slices.Compact(positions) // a partition asked twice
	positions = positions[:min(len(positions), limit)]
	list, err := json.Marshal(positions)
	if err != nil {
		return nil, err
	}
	stmt, err := s.partitionStmt(ctx, partRead{byPosition: true}, func(q *strings.Builder) {
		q.WriteString(`SELECT ` + recordColumns + `, part FROM event_log WHERE position IN (SELECT value FROM json_each(?)) ORDER BY position`)
	})
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, stmt).QueryContext(ctx, string(list))
}

// Group implements [store.Grouper].
func (s *Store) Group(ctx context.Context, group string) (store.GroupInfo, error) {
	if err := store.ValidateName("group name", group); err != nil {
		return store.GroupInfo{}, fmt.Errorf("sqlitestore: group: %w", err)
	}
	if err := s.enter(ctx, "group"); err != nil {
		return store.GroupInfo{}, err
	}
	info := store.GroupInfo{Name: group}
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return info, s.fail(ctx, "group "+group, err)
	}
	defer tx.Rollback()
	nowUS := time.Now().UnixMicro()
	rows, err := tx.QueryContext(ctx, `SELECT p.part, p.owner, p.expires_us, p.cursor,
		(SELECT count(*) FROM event_log AS e WHERE e.part = p.part AND e.position > CAST(substr(p.cursor, 2) AS INTEGER))
		FROM event_group_partitions AS p WHERE p.grp = ? ORDER BY p.part`, group)
	if err != nil {
		return info, s.fail(ctx, "group "+group, err)
	}
	held := map[string]int{}
	for rows.Next() {
		var p store.PartitionInfo
		var exp int64
		var c string
		if err := rows.Scan(&p.Partition, &p.Owner, &exp, &c, &p.Lag); err != nil {
			rows.Close()
			return info, s.fail(ctx, "group "+group, err)
		}
		p.Cursor = store.Cursor(c)
		if p.Owner != "" && exp >= nowUS {
			p.Expires = unixMicroUTC(exp)
			held[p.Owner]++
		} else {
			p.Owner = ""
		}
		info.Partitions = append(info.Partitions, p)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return info, s.fail(ctx, "group "+group, err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT member, expires_us FROM event_group_members WHERE grp = ? AND expires_us >= ? ORDER BY member`, group, nowUS)
	if err != nil {
		return info, s.fail(ctx, "group "+group, err)
	}
	for rows.Next() {
		var m store.MemberInfo
		var exp int64
		if err := rows.Scan(&m.ID, &exp); err != nil {
			rows.Close()
			return info, s.fail(ctx, "group "+group, err)
		}
		m.Expires, m.Partitions = unixMicroUTC(exp), held[m.ID]
		info.Members = append(info.Members, m)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return info, s.fail(ctx, "group "+group, err)
	}
	return info, nil
}

// majorityPosition returns the position that more than half of afters
// are, if one is (Boyer and Moore's vote), or else one of them, and how
// many are at it.
func majorityPosition(afters []int64) (int64, int) {
	var m int64
	votes := 0
	for _, a := range afters {
		switch {
		case votes == 0:
			m, votes = a, 1
		case a == m:
			votes++
		default:
			votes--
		}
	}
	n := 0
	for _, a := range afters {
		if a == m {
			n++
		}
	}
	return m, n
}

// partRead names a statement of ReadPartitions.
type partRead struct {
	masked     bool // the partitions at one cursor read by a mask (see readPartitions)
	n          int  // partitions read by a term each
	positions  bool // of their positions only (see readManyPartitions)
	byPosition bool // the records at a list of positions
}

// partitionStmt returns a statement of ReadPartitions, which write writes,
// prepared once: the statements are long (a subquery per partition), and
// writing and preparing them on every poll would cost more than running
// them.
func (s *Store) partitionStmt(ctx context.Context, k partRead, write func(*strings.Builder)) (*sql.Stmt, error) {
	s.partMu.Lock()
	defer s.partMu.Unlock()
	if st := s.partStmts[k]; st != nil {
		return st, nil
	}
	var q strings.Builder
	write(&q)
	st, err := s.r.PrepareContext(ctx, q.String())
	if err != nil {
		return nil, err
	}
	if s.partStmts == nil {
		s.partStmts = map[partRead]*sql.Stmt{}
	}
	s.partStmts[k] = st
	return st, nil
}

// thisHost names, in event_group_members, where this process's PID means
// something: its host and, on Linux, its PID namespace, as in
// "web-1 pid:[4026531836]". Containers may share a host name (with host
// networking, for instance) yet not their PIDs, so that a process of one
// would find a live process of another gone. It is "" when the host or
// the namespace cannot be told, and then no claim of this process judges
// members by their PIDs.
var thisHost = hostIdentity()

// hostIdentity returns what thisHost holds.
func hostIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return ""
	}
	ns, err := pidNamespace()
	switch {
	case err != nil:
		return "" // no /proc, say: containers are not told apart
	case ns == "":
		return host
	}
	return host + " " + ns
}

// indexPartitions makes the index that partition reads scan, at the first
// claim in a file rather than when the file is made: keeping it costs every
// append a fifth of its speed, which a log that no group reads should not
// pay. Made in the claim's transaction, it holds appends up for as long as
// indexing the log takes, once.
func (s *Store) indexPartitions(ctx context.Context, tx *sql.Tx) error {
	if s.partIndexed.Load() {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS event_log_part ON event_log (part, position)`); err != nil {
		return fmt.Errorf("index partitions: %w", err)
	}
	return nil // Claim sets partIndexed once the transaction commits
}

// dropExited expires the leases of the group's members whose process, on
// this host and in this PID namespace (see thisHost), has exited, and
// removes the members: the claim then takes their partitions at once, as
// taken over. Members of other hosts or namespaces, whose PIDs it cannot
// check, keep their partitions until their leases run out.
func dropExited(ctx context.Context, tx *sql.Tx, group string) error {
	if thisHost == "" {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT member, pid FROM event_group_members WHERE grp = ? AND host = ? AND pid <> ?`, group, thisHost, os.Getpid())
	if err != nil {
		return err
	}
	var dead []string
	for rows.Next() {
		var m string
		var pid int
		if err := rows.Scan(&m, &pid); err != nil {
			rows.Close()
			return err
		}
		if !processAlive(pid) {
			dead = append(dead, m)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	for _, m := range dead {
		if _, err := tx.ExecContext(ctx, `UPDATE event_group_partitions SET expires_us = 0 WHERE grp = ? AND owner = ?`, group, m); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM event_group_members WHERE grp = ? AND member = ?`, group, m); err != nil {
			return err
		}
	}
	return nil
}

// writeTx runs f in an IMMEDIATE transaction on the writer connection.
func (s *Store) writeTx(ctx context.Context, f func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}
