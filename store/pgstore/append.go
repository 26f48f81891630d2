package pgstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ncore-io/event/store"
)

// appendSQL is the statement that stores a batch and returns each record's
// position and version (rows in any order; positions follow batch order).
// Parameters $1 … $10 hold one array element per record, the last its
// partition (store.Partition, computed by the caller rather than in SQL,
// where it cost the server a twentieth of an insert); expectation k says
// aggregate $11[k] must be at version $12[k] just before record $13[k]
// (1-based), which lets one statement carry the batches of several
// callers one after the other. A stored ID fails with unique_violation on
// events_id_key, a failed expectation with SQLSTATE EV409; either way the
// statement has changed nothing. A NULL payload is a nil one, kept apart
// from an empty one.
//
// It is one plain statement, planned once per connection, rather than a
// PL/pgSQL function, whose interpretation cost more than the inserts:
//
//   - r: the records, numbered in batch order;
//   - c: each aggregate touched, by a record or an expectation, with how
//     many records it gets;
//   - u: lock and advance every such aggregate's row, in aggregate_id order
//     so that concurrent appenders cannot deadlock. The row lock is what
//     keeps versions dense across concurrent transactions: a second
//     appender waits for the first to end and then advances the committed
//     version. Its RETURNING gives the new version; the old one is that
//     minus c.n. It also records the transaction's key (log_xid), and
//     leaves out a row last appended to by a transaction with a later key
//     (see migration 5): this one's records would sort before that one's;
//   - ins: insert in batch order (positions are drawn per row as inserted),
//     numbering each aggregate's records on from its old version;
//   - then, in that order (Append runs its inputs one after the other):
//     ins's rows, so that a replayed batch fails on its stored IDs rather
//     than its stale expectation; a version_conflict call per failed
//     expectation, which aborts the statement; an order_conflict call per
//     aggregate that u left out, which aborts it as a serialization
//     failure; and, if notify, one row
//     (-1, -1) that sends the NOTIFY, delivered at commit and once per
//     transaction. Group commits leave it out and notify after committing
//     (see notifier).
func appendSQL(schema, channel string, notify bool) string {
	return `WITH r AS MATERIALIZED (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
	                     $6::jsonb[], $7::text[], $8::text[], $9::bytea[], $10::int[])
	         WITH ORDINALITY AS r(id, topic, kind, agg, t, m, pt, ct, p, part, i)
), c AS MATERIALIZED (
	SELECT x.agg, sum(x.n)::bigint AS n
	FROM (SELECT r.agg, 1 AS n FROM r WHERE r.agg <> ''
	      UNION ALL
	      SELECT a, 0 FROM unnest($11::text[]) AS a) AS x
	GROUP BY x.agg
), u AS (
	INSERT INTO ` + schema + `.aggregates AS t (aggregate_id, version, txid)
	SELECT c.agg, c.n, ` + schema + `.log_xid(pg_current_xact_id()) FROM c ORDER BY c.agg
	ON CONFLICT (aggregate_id) DO UPDATE SET version = t.version + excluded.version, txid = excluded.txid
	WHERE t.txid <= excluded.txid
	RETURNING t.aggregate_id, t.version
), o AS MATERIALIZED (
	SELECT u.aggregate_id AS agg, u.version - c.n AS old FROM u JOIN c ON c.agg = u.aggregate_id
), ins AS (
	INSERT INTO ` + schema + `.events AS ev
		(id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload, part)
	SELECT r.id, r.topic, r.kind, r.agg,
	       CASE WHEN r.agg = '' THEN 0
	            ELSE o.old + row_number() OVER (PARTITION BY r.agg ORDER BY r.i) END,
	       r.t, r.m, r.pt, r.ct, r.p, r.part
	FROM r LEFT JOIN o ON o.agg = r.agg
	WHERE r.agg = '' OR o.agg IS NOT NULL -- the statement fails for the others
	ORDER BY r.i
	RETURNING ev.position, ev.version
)
SELECT position, version FROM ins
UNION ALL
SELECT ` + schema + `.version_conflict(e.agg, e.ver, e.actual), 0
FROM (SELECT x.agg, x.ver,
             o.old + (SELECT count(*) FROM r WHERE r.agg = x.agg AND r.i < x.ord) AS actual
      FROM unnest($11::text[], $12::bigint[], $13::integer[]) AS x(agg, ver, ord)
      JOIN o ON o.agg = x.agg) AS e
WHERE e.actual <> e.ver
UNION ALL
SELECT ` + schema + `.order_conflict(c.agg), 0 FROM c WHERE NOT EXISTS (SELECT FROM u WHERE u.aggregate_id = c.agg)` + notifyRow(channel, notify)
}

// notifyRow is the last part of the append statements: a row (-1, -1)
// that sends the NOTIFY, if notify.
func notifyRow(channel string, notify bool) string {
	if !notify {
		return ""
	}
	return `
UNION ALL
SELECT -1, -1 FROM (SELECT pg_notify(` + quoteLiteral(channel) + `, '')) AS n`
}

// appendPlainSQL is appendSQL for a batch whose records have no aggregate
// and that has no expectations, the common case of events that are facts
// about no entity: it only inserts, and so skips the statement's other
// parts, which cost as much again. It takes appendSQL's first ten
// parameters (the aggregate IDs, all empty, are not used).
func appendPlainSQL(schema, channel string, notify bool) string {
	return `WITH ins AS (
	INSERT INTO ` + schema + `.events AS ev
		(id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload, part)
	SELECT r.id, r.topic, r.kind, '', 0, r.t, r.m, r.pt, r.ct, r.p, r.part
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
	            $6::jsonb[], $7::text[], $8::text[], $9::bytea[], $10::int[])
	     WITH ORDINALITY AS r(id, topic, kind, agg, t, m, pt, ct, p, part, i)
	ORDER BY r.i
	RETURNING ev.position, ev.version
)
SELECT position, version FROM ins` + notifyRow(channel, notify)
}

// appendStatement returns the statement that stores a and how many of
// a's parameters it takes (see args.params). It sends the NOTIFY if notify.
func (s *Store) appendStatement(a *args, notify bool) (string, int) {
	switch {
	case a.plain() && notify:
		return s.sql.appendPlain, 10
	case a.plain():
		return s.sql.appendPlainQuiet, 10
	case notify:
		return s.sql.append, 13
	}
	return s.sql.appendQuiet, 13
}

// plain reports whether appendPlainSQL can store a.
func (a *args) plain() bool {
	if len(a.eaggs) > 0 {
		return false
	}
	for _, agg := range a.aggs {
		if agg != "" {
			return false
		}
	}
	return true
}

// SQLSTATE that version_conflict raises on a failed expectation.
const codeVersionConflict = "EV409"

// Append stores recs atomically, as [store.Store] describes. Concurrent
// calls share one transaction (group commit); each call's batch is checked
// on its own, so a conflict or duplicate in one fails only that call.
//
// When ctx ends while the batch is queued, Append withdraws it and returns
// ctx's error, having stored nothing. When ctx ends once the writer has
// taken the batch into a group, or the connection fails during the commit,
// the batch may or may not have been stored: Append fails with an error
// that matches [store.ErrMaybeStored] (and ctx's error, if ctx ended).
// Appending it again is safe, since a stored ID with the same content is a
// no-op.
//
// When every record's ID is already stored with the same content, Append
// succeeds without checking expect: it is a retry of an append that
// succeeded. Otherwise already-stored records are skipped and expect is
// checked against the aggregates' current versions.
func (s *Store) Append(ctx context.Context, recs []store.Record, expect ...store.Expect) error {
	if err := s.enter("append"); err != nil {
		return err
	}
	defer s.exit()
	a, err := s.encode(recs, expect)
	if err != nil {
		return fmt.Errorf("pgstore: append: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pgstore: append: %w", err)
	}
	req := &request{ctx: ctx, args: a, done: make(chan struct{})}
	if err := s.w.submit(req); err != nil {
		return fmt.Errorf("pgstore: append: %w", err)
	}
	select {
	case <-req.done:
	case <-ctx.Done():
		if s.w.withdraw(req) {
			return fmt.Errorf("pgstore: append: %w before the writer took it; nothing was stored", ctx.Err())
		}
		return fmt.Errorf("pgstore: append: %w while it was being committed: %w", ctx.Err(), store.ErrMaybeStored)
	}
	if req.err != nil {
		if cerr := ctx.Err(); cerr != nil && errors.Is(req.err, store.ErrMaybeStored) {
			return fmt.Errorf("pgstore: append: %w while it was being committed: %w", cerr, req.err)
		}
		return fmt.Errorf("pgstore: append: %w", req.err)
	}
	writeBack(recs, req.res)
	return nil
}

// AppendTx appends recs in tx, the caller's transaction, for the
// transactional outbox: the records commit or roll back with tx, and
// readers see them once tx has committed. It follows the rules of
// [Store.Append] but bypasses group commit. It runs in a savepoint, so when
// it fails tx is still usable. tx must be on the store's database; it is
// not safe to use tx concurrently with AppendTx.
//
// It fails with [store.ErrTxConflict] (a serialization failure, SQLSTATE
// 40001) when a transaction that began after tx appended to one of the
// aggregates and committed, or holds it and commits while AppendTx waits:
// the log orders records by transaction ID, and tx's records of that
// aggregate would come before the other's, at later versions. Retry tx
// from the start, as after any serialization failure.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, recs []store.Record, expect ...store.Expect) error {
	if err := s.enter("append"); err != nil {
		return err
	}
	defer s.exit()
	if tx == nil {
		return errors.New("pgstore: append: nil transaction")
	}
	a, err := s.encode(recs, expect)
	if err != nil {
		return fmt.Errorf("pgstore: append: %w", err)
	}
	res, err := s.appendTx(ctx, tx, a)
	if isOrderConflict(err) {
		return fmt.Errorf("pgstore: append: %w: %w", store.ErrTxConflict, err)
	}
	if err != nil {
		return fmt.Errorf("pgstore: append: %w", err)
	}
	writeBack(recs, res)
	return nil
}

func writeBack(recs []store.Record, res []result) {
	for i := range recs {
		recs[i].Position = res[i].pos
		recs[i].Version = res[i].ver
	}
}

type result struct{ pos, ver int64 }

// args is a batch as the append function takes it: one array per column.
// It holds copies, so a caller that gives up on its Append may reuse its
// records while the writer still encodes them.
type args struct {
	ids, topics, kinds, aggs, ptypes, ctypes []string
	times                                    []time.Time
	// metas are JSON objects, or nil for NULL. As json.RawMessage pgx
	// sends them as JSON in every query mode; as [][]byte, in the modes
	// that do not prepare (QueryExecModeExec, for poolers), it would send
	// them as bytea, which the statement cannot cast to jsonb.
	metas    []json.RawMessage
	payloads [][]byte
	parts    []int32 // see store.Partition
	eaggs    []string
	evers    []int64
	eords    []int32
}

func (a *args) len() int { return len(a.ids) }

func (a *args) params() []any {
	return []any{a.ids, a.topics, a.kinds, a.aggs, a.times, a.metas, a.ptypes, a.ctypes, a.payloads, a.parts, a.eaggs, a.evers, a.eords}
}

// newArgs returns args for n records and m expectations, with the arrays
// of one kind in one allocation: most batches are of one record.
func newArgs(n, m int) *args {
	text := make([]string, 6*n)
	return &args{
		ids: text[:n:n], topics: text[n : 2*n : 2*n], kinds: text[2*n : 3*n : 3*n],
		aggs: text[3*n : 4*n : 4*n], ptypes: text[4*n : 5*n : 5*n], ctypes: text[5*n:],
		times: make([]time.Time, n),
		metas: make([]json.RawMessage, n), payloads: make([][]byte, n), parts: make([]int32, n),
		eaggs: make([]string, 0, m), evers: make([]int64, 0, m), eords: make([]int32, 0, m),
	}
}

// merge returns the batches of group one after the other, each one's
// expectations applying just before its first record.
func merge(group []*request) *args {
	n, m := 0, 0
	for _, r := range group {
		n += r.args.len()
		m += len(r.args.eaggs)
	}
	a := newArgs(n, m)
	off := 0
	for _, r := range group {
		b := r.args
		copy(a.ids[off:], b.ids)
		copy(a.topics[off:], b.topics)
		copy(a.kinds[off:], b.kinds)
		copy(a.aggs[off:], b.aggs)
		copy(a.ptypes[off:], b.ptypes)
		copy(a.ctypes[off:], b.ctypes)
		copy(a.times[off:], b.times)
		copy(a.metas[off:], b.metas)
		copy(a.payloads[off:], b.payloads)
		copy(a.parts[off:], b.parts)
		a.eaggs = append(a.eaggs, b.eaggs...)
		a.evers = append(a.evers, b.evers...)
		for _, o := range b.eords {
			a.eords = append(a.eords, o+int32(off))
		}
		off += b.len()
	}
	return a
}

// subset returns the records at idx, with all of a's expectations.
func (a *args) subset(idx []int) *args {
	b := &args{eaggs: a.eaggs, evers: a.evers, eords: a.eords}
	for _, i := range idx {
		b.ids = append(b.ids, a.ids[i])
		b.topics = append(b.topics, a.topics[i])
		b.kinds = append(b.kinds, a.kinds[i])
		b.aggs = append(b.aggs, a.aggs[i])
		b.ptypes = append(b.ptypes, a.ptypes[i])
		b.ctypes = append(b.ctypes, a.ctypes[i])
		b.times = append(b.times, a.times[i])
		b.metas = append(b.metas, a.metas[i])
		b.payloads = append(b.payloads, a.payloads[i])
		b.parts = append(b.parts, a.parts[i])
	}
	return b
}

// encode validates a batch with store.ValidateRecords (which also refuses
// what PostgreSQL text cannot hold: invalid UTF-8 and NUL bytes) and
// converts it for the append function.
func (s *Store) encode(recs []store.Record, expect []store.Expect) (*args, error) {
	if err := store.ValidateRecords(recs, expect, s.opts.maxPayload); err != nil {
		return nil, err
	}
	// The payloads and the metadata, encoded, share one buffer.
	size := 0
	for i := range recs {
		size += len(recs[i].Payload)
		for k, v := range recs[i].Metadata {
			size += len(k) + len(v) + 6
		}
	}
	buf := make([]byte, 0, size+2*len(recs))
	a := newArgs(len(recs), len(expect))
	for i := range recs {
		r := &recs[i]
		a.ids[i], a.topics[i], a.kinds[i], a.aggs[i] = r.ID, r.Topic, r.Kind, r.AggregateID
		a.ptypes[i], a.ctypes[i] = r.PayloadType, r.ContentType
		a.times[i] = r.Time.UTC().Truncate(time.Microsecond)
		a.parts[i] = int32(store.Partition(r.AggregateID, r.ID, s.partitions))
		if len(r.Metadata) > 0 {
			start := len(buf)
			buf = appendMetadata(buf, r.Metadata)
			a.metas[i] = buf[start:len(buf):len(buf)]
		}
		// nil stays nil (stored as NULL), empty stays empty.
		if r.Payload != nil {
			start := len(buf)
			buf = append(buf, r.Payload...)
			a.payloads[i] = buf[start:len(buf):len(buf)]
		}
	}
	for _, e := range expect {
		a.eaggs = append(a.eaggs, e.AggregateID)
		a.evers = append(a.evers, e.Version)
		a.eords = append(a.eords, 1)
	}
	return a, nil
}

// appendMetadata appends m to b as a JSON object. Its keys and values are
// valid UTF-8 without NUL bytes (see store.ValidateRecords), so escaping
// quotes, backslashes and control characters is all that JSON asks.
func appendMetadata(b []byte, m map[string]string) []byte {
	b = append(b, '{')
	first := true
	for k, v := range m {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, v)
	}
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// callAppend runs the append statement on a and returns the records'
// positions and versions in batch order.
func (s *Store) callAppend(ctx context.Context, q querier, a *args) ([]result, error) {
	sql, n := s.appendStatement(a, true)
	rows, err := q.Query(ctx, sql, a.params()[:n]...)
	if err != nil {
		return nil, err
	}
	return collectAppend(rows, a)
}

// collectAppend reads the rows of the append statement.
func collectAppend(rows pgx.Rows, a *args) ([]result, error) {
	res := make([]result, 0, a.len())
	var r result
	_, err := pgx.ForEachRow(rows, []any{&r.pos, &r.ver}, func() error {
		if r.pos >= 0 { // not the NOTIFY row
			res = append(res, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(res) != a.len() {
		return nil, fmt.Errorf("append statement returned %d rows for %d records", len(res), a.len())
	}
	// Positions follow batch order (the statement inserts in that order);
	// rows need not.
	slices.SortFunc(res, func(x, y result) int { return cmp.Compare(x.pos, y.pos) })
	return res, nil
}

// querier is what pgxpool.Pool, pgx.Conn and pgx.Tx have in common.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// txBroken marks an error after which the transaction cannot go on.
type txBroken struct{ err error }

func (e txBroken) Error() string { return e.err.Error() }
func (e txBroken) Unwrap() error { return e.err }

// appendTx appends a in its own savepoint of tx: on failure only the
// savepoint is rolled back. A unique violation on the event ID means
// another transaction stored one of the IDs after we looked; looking again
// then finds it.
func (s *Store) appendTx(ctx context.Context, tx pgx.Tx, a *args) ([]result, error) {
	res, err := s.appendTxPipelined(ctx, tx, a)
	if err == nil || !isIDConflict(err) {
		return res, err
	}
	// An ID is stored already (a retry, or another transaction's): look
	// the IDs up, and append only the new ones.
	for attempt := 1; ; attempt++ {
		sp, err := tx.Begin(ctx)
		if err != nil {
			return nil, txBroken{err}
		}
		res, err := s.appendChecked(ctx, sp, a)
		if err == nil {
			if err := sp.Commit(ctx); err != nil {
				return nil, txBroken{err}
			}
			return res, nil
		}
		if rbErr := sp.Rollback(ctx); rbErr != nil {
			return nil, txBroken{errors.Join(err, rbErr)}
		}
		if isIDConflict(err) && attempt < 3 {
			continue
		}
		return nil, err
	}
}

// txSavepoint is the savepoint appendTxPipelined appends in.
const txSavepoint = "event_append_tx"

// appendTxPipelined appends a in tx in one round trip: the savepoint, the
// append statement and the savepoint's release go in one pipelined batch.
// It does not look up the IDs first: a stored ID fails the statement on the
// unique index, and the caller then takes the careful path. On failure the
// savepoint is rolled back, so tx stays usable.
func (s *Store) appendTxPipelined(ctx context.Context, tx pgx.Tx, a *args) ([]result, error) {
	conn := tx.Conn()
	res, failed, err := s.execAppend(ctx, conn, s.txModes.prepares(conn), a, true, "SAVEPOINT "+txSavepoint, "RELEASE SAVEPOINT "+txSavepoint)
	if err == nil {
		return res, nil
	}
	if failed == failedBefore || failed == failedAnswer {
		// The savepoint was not made, or was released with what the
		// statement stored: tx is in trouble.
		return nil, txBroken{err}
	}
	// The statement failed inside the savepoint, which the batch's release
	// could not then release: roll back to it, and release it.
	if _, rbErr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+txSavepoint+"; RELEASE SAVEPOINT "+txSavepoint); rbErr != nil {
		return nil, txBroken{errors.Join(err, rbErr)}
	}
	if isIDConflict(err) {
		return nil, err
	}
	return nil, conflictError(err)
}

// appendChecked appends a in tx after looking up the IDs already stored:
// those with the same content are skipped (their stored position and
// version are the result), one with different content fails the batch.
func (s *Store) appendChecked(ctx context.Context, tx pgx.Tx, a *args) ([]result, error) {
	rows, err := tx.Query(ctx, s.sql.loadIDs, a.ids)
	if err != nil {
		return nil, err
	}
	stored, err := pgx.CollectRows(rows, s.scanRecord)
	if err != nil {
		return nil, err
	}
	res := make([]result, a.len())
	var fresh []int
	if len(stored) > 0 {
		byID := make(map[string]*store.Record, len(stored))
		for i := range stored {
			byID[stored[i].ID] = &stored[i]
		}
		for i, id := range a.ids {
			old, ok := byID[id]
			if !ok {
				fresh = append(fresh, i)
				continue
			}
			if !sameContent(a, i, old) {
				return nil, fmt.Errorf("record %d (%s): %w", i, id, store.ErrDuplicateID)
			}
			res[i] = result{old.Position, old.Version}
		}
		if len(fresh) == 0 {
			return res, nil
		}
		a = a.subset(fresh)
	}
	got, err := s.callAppend(ctx, tx, a)
	if err != nil {
		return nil, conflictError(err)
	}
	if fresh == nil {
		return got, nil
	}
	for j, i := range fresh {
		res[i] = got[j]
	}
	return res, nil
}

// sameContent reports whether record i of a is the stored record old,
// apart from what the store assigns.
func sameContent(a *args, i int, old *store.Record) bool {
	var meta map[string]string
	if a.metas[i] != nil {
		if err := json.Unmarshal(a.metas[i], &meta); err != nil {
			return false
		}
	}
	return a.topics[i] == old.Topic && a.kinds[i] == old.Kind && a.aggs[i] == old.AggregateID &&
		a.times[i].Equal(old.Time) && a.ptypes[i] == old.PayloadType && a.ctypes[i] == old.ContentType &&
		bytes.Equal(a.payloads[i], old.Payload) && (a.payloads[i] == nil) == (old.Payload == nil) &&
		maps.Equal(meta, old.Metadata)
}

// conflictError turns the append function's EV409 into a
// *store.VersionConflictError.
func conflictError(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != codeVersionConflict {
		return err
	}
	var d struct {
		Aggregate string `json:"aggregate"`
		Expected  int64  `json:"expected"`
		Actual    int64  `json:"actual"`
	}
	if jerr := json.Unmarshal([]byte(pe.Detail), &d); jerr != nil {
		return fmt.Errorf("%w: %s (detail %q unreadable: %v)", store.ErrVersionConflict, pe.Message, pe.Detail, jerr)
	}
	return &store.VersionConflictError{AggregateID: d.Aggregate, Expected: d.Expected, Actual: d.Actual}
}

// isIDConflict reports a unique violation on the event ID: one of the IDs
// is stored already.
func isIDConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "events_id_key"
}
