package pgstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ncore-io/event/internal/decode"
	"github.com/ncore-io/event/store"
)

// queries holds the fixed SQL of a store, with its schema filled in.
type queries struct {
	schema      string
	append      string
	appendPlain string
	// appendQuiet and appendPlainQuiet are append and appendPlain without
	// the NOTIFY, for group commits (see notifier).
	appendQuiet      string
	appendPlainQuiet string
	loadIDs          string
	load             string
	loadAggregate    string
	horizon          string // see horizonSQL
	// setHorizon and setHorizonOrdered store the read horizon for the rest
	// of a Read's transaction; the second also makes it read in index
	// order.
	setHorizon, setHorizonOrdered string
	// hidden is hiddenSQL for the schema.
	hidden string
	// readPartitions calls the function that ReadPartitions reads with
	// (migration 6).
	readPartitions string
	// commit saves group checkpoints fenced by their leases; unheld
	// lists those of the partitions given whose lease the member does
	// not hold.
	commit, unheld string
}

// recordCols are the columns that scanRecord reads, in order.
const recordCols = "position, id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload"

func buildQueries(schema, channel string, partitions int) queries {
	horizon := horizonSQL(schema)
	return queries{
		schema:           schema,
		append:           appendSQL(schema, channel, true),
		appendPlain:      appendPlainSQL(schema, channel, true),
		appendQuiet:      appendSQL(schema, channel, false),
		appendPlainQuiet: appendPlainSQL(schema, channel, false),
		loadIDs:          "SELECT " + recordCols + " FROM " + schema + ".events WHERE id = ANY($1)",
		load:             "SELECT " + recordCols + " FROM " + schema + ".events WHERE id = $1",
		loadAggregate:    "SELECT " + recordCols + " FROM " + schema + ".events WHERE aggregate_id = $1 AND version >= $2 ORDER BY version",
		horizon:          horizon,
		setHorizon:       "SELECT set_config('" + horizonGUC + "', (" + horizon + ")::text, true)",
		setHorizonOrdered: "SELECT set_config('" + horizonGUC + "', (" + horizon + ")::text, true), " +
			"set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true), set_config('enable_seqscan', 'off', true), " +
			// A disabled plan node costs 1e10, far above jit_above_cost:
			// compiling a page query would cost more than running it.
			"set_config('jit', 'off', true)",
		hidden: hiddenSQL(schema),
		commit: "UPDATE " + schema + ".group_partitions AS g SET cursor = c.cur FROM unnest($3::int[], $4::bigint[], $5::text[]) AS c(part, token, cur) " +
			"WHERE g.grp = $1 AND g.owner = $2 AND g.part = c.part AND g.token = c.token",
		unheld: "SELECT c.part FROM unnest($3::int[], $4::bigint[]) WITH ORDINALITY AS c(part, token, i) WHERE NOT EXISTS (SELECT FROM " + schema + ".group_partitions AS g " +
			"WHERE g.grp = $1 AND g.owner = $2 AND g.part = c.part AND g.token = c.token) ORDER BY c.i",
		readPartitions: "SELECT * FROM " + schema + ".read_partitions($1, $2, $3, $4, $5, $6, $7)",
	}
}

// scanRecord reads the recordCols of a row.
func (s *Store) scanRecord(row pgx.CollectableRow) (store.Record, error) {
	var r store.Record
	var meta []byte
	if err := row.Scan(&r.Position, &r.ID, &r.Topic, &r.Kind, &r.AggregateID, &r.Version, &r.Time, &meta, &r.PayloadType, &r.ContentType, &r.Payload); err != nil {
		return r, err
	}
	return r, finishRecord(&r, meta)
}

func finishRecord(r *store.Record, meta []byte) error {
	r.Time = r.Time.UTC()
	if len(meta) > 0 {
		if err := json.Unmarshal(meta, &r.Metadata); err != nil {
			return fmt.Errorf("record %s: metadata: %w", r.ID, err)
		}
	}
	return nil
}

// Load returns the record with the given ID, as [store.Store] describes.
// Its Cursor is not set.
func (s *Store) Load(ctx context.Context, id string) (store.Record, error) {
	if err := s.enter("load"); err != nil {
		return store.Record{}, err
	}
	defer s.exit()
	rows, err := s.pool.Query(ctx, s.sql.load, id)
	if err != nil {
		return store.Record{}, fmt.Errorf("pgstore: load %s: %w", id, err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, s.scanRecord)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Record{}, fmt.Errorf("pgstore: load %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("pgstore: load %s: %w", id, err)
	}
	return r, nil
}

// LoadAggregate returns an aggregate's records from fromVersion on, as
// [store.Store] describes. Their Cursors are not set.
func (s *Store) LoadAggregate(ctx context.Context, aggregateID string, fromVersion int64) ([]store.Record, error) {
	if err := store.ValidateName("aggregate ID", aggregateID); err != nil {
		return nil, fmt.Errorf("pgstore: load aggregate: %w", err)
	}
	if err := s.enter("load aggregate"); err != nil {
		return nil, err
	}
	defer s.exit()
	rows, err := s.pool.Query(ctx, s.sql.loadAggregate, aggregateID, fromVersion)
	if err != nil {
		return nil, fmt.Errorf("pgstore: load aggregate %s: %w", aggregateID, err)
	}
	recs, err := pgx.CollectRows(rows, s.scanRecord)
	if err != nil {
		return nil, fmt.Errorf("pgstore: load aggregate %s: %w", aggregateID, err)
	}
	return recs, nil
}

// Row kinds in a Read result: the page, the last row a filtered read
// scanned (how far it looked), the retention watermark when it lies after
// the cursor, the cursor when it lies ahead of the read horizon, and one
// row if records past the horizon are to be seen already (see hiddenSQL).
const (
	rowRecord = iota
	rowTail
	rowExpired
	rowAhead
	rowHidden
)

// defaultMinScan is the fewest rows a filtered Read scans before it gives up on
// filling its page and returns what it found with a cursor past the scanned
// rows; it scans at least 10 times its limit. The bound keeps one call's
// work (and its time holding a connection) in proportion to its page
// however rare the matches are, while the cursor it returns keeps a read
// through the whole log linear.
const defaultMinScan = 10_000

// horizonGUC carries the read horizon from the statement that computes it
// to the one that reads, within the Read's transaction.
const horizonGUC = "ncore_event.horizon"

// Read returns the next page of records matching q, as [store.Store]
// describes.
//
// It only returns records of transactions older than the oldest
// transaction of this database still running (see Order in the package
// documentation), in (transaction ID, position) order. Below that horizon
// no record can appear any more, so a cursor never passes a record that
// commits later. A filtered read that comes back short also moves the
// cursor past the records it looked at, so the next read does not look at
// them again; it looks at no more than max(10×limit, 10,000) records per
// call.
//
// The horizon and the page come from two statements of one read-only READ
// COMMITTED transaction, sent together (one round trip): the page
// statement starts after the horizon statement ends, as the horizon
// requires. The page, the scan's tail and the retention check come from
// one statement, hence one snapshot. Reads in global order run with sorts
// and bitmap scans disabled, so the (txid, position) index drives the scan
// and every page costs what it returns, whatever the planner estimates for
// a filter; otherwise a pattern that the planner guesses rare turns every
// page into a scan and sort of the rest of the log.
func (s *Store) Read(ctx context.Context, q store.Query) ([]store.Record, store.Cursor, error) {
	if err := s.enter("read"); err != nil {
		return nil, q.After, err
	}
	defer s.exit()
	after, err := s.parseCursor(q.After)
	if err != nil {
		return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
	}
	limit, err := store.PageLimit(q.Limit)
	if err != nil {
		return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
	}
	if q.Topic != "" {
		if err := store.ValidatePattern(q.Topic); err != nil {
			return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
		}
	}
	rs, err := s.readPage(ctx, q, after, limit)
	if err != nil {
		return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
	}
	s.hiddenFound(rs.hidden)
	if rs.ahead {
		return nil, q.After, fmt.Errorf("pgstore: read: %w", aheadError(q.After))
	}
	if rs.expired {
		return nil, q.After, fmt.Errorf("pgstore: read: %w", store.ErrCursorExpired)
	}
	if rs.after == (key{}) {
		return rs.recs, q.After, nil
	}
	return rs.recs, s.cursor(rs.after), nil
}

type readResult struct {
	recs    []store.Record
	after   key
	expired bool
	ahead   bool
	hidden  bool // committed records lie past the horizon
}

func (s *Store) readPage(ctx context.Context, q store.Query, after key, limit int) (readResult, error) {
	rs := readResult{after: after}
	sql, params, filtered, ordered := s.readSQL(q, after, limit)
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return rs, err
	}
	defer c.Release() // the pool drops it if the transaction is left open
	conn := c.Conn()
	var b pgconn.Batch
	b.ExecParams("BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY", nil, nil, nil, nil)
	if ordered {
		b.ExecParams(s.sql.setHorizonOrdered, nil, nil, nil, nil)
	} else {
		b.ExecParams(s.sql.setHorizon, nil, nil, nil, nil)
	}
	if err := queueBinary(ctx, &b, conn, s.prepare, sql, params); err != nil {
		return rs, err
	}
	b.ExecParams("COMMIT", nil, nil, nil, nil)

	page := decode.GetPage()
	defer func() {
		if page != nil { // failed
			page.Discard()
		}
	}()
	var tail key
	_, rowErr, err := runBatch(ctx, conn, &b, 4, 2, func(v [][]byte) error { // the page is the third
		return s.readRow(v, q, page, &rs, &tail)
	})
	if err != nil {
		// The failed transaction is still open, so the pool closes the
		// connection on release: none of its statements need forgetting.
		return rs, err
	}
	if rowErr != nil {
		return rs, rowErr
	}
	if filtered && page.Len() < limit && rs.after.less(tail) {
		rs.after = tail
	}
	rs.recs, page = page.Records(), nil
	return rs, nil
}

// readRowCols is how many columns a row of a Read statement has: its
// kind, then the record's (see decodeRecord).
const readRowCols = 1 + recordRowCols

// readRow takes in one row of a Read statement (see buildReadSQL): a
// record goes on the page and moves rs.after, the other kinds set what
// they say.
func (s *Store) readRow(v [][]byte, q store.Query, page *decode.Page, rs *readResult, tail *key) error {
	if len(v) != readRowCols || len(v[0]) != 4 {
		return fmt.Errorf("a row of %d columns, want %d, the first an int4", len(v), readRowCols)
	}
	switch binary.BigEndian.Uint32(v[0]) {
	case rowTail:
		txid, err := decodeXid8(v[1])
		if err != nil {
			return fmt.Errorf("tail: %w", err)
		}
		pos, err := decodeInt8(v[2])
		if err != nil {
			return fmt.Errorf("tail: %w", err)
		}
		*tail = key{txid, pos}
		return nil
	case rowExpired:
		rs.expired = true
		return nil
	case rowAhead:
		rs.ahead = true
		return nil
	case rowHidden:
		rs.hidden = true
		return nil
	}
	r := page.Add() // decoded in place
	k, err := s.decodeRecord(v[1:], r)
	if err != nil {
		return err
	}
	// The SQL filter is exact; this guards the translation of the
	// pattern, and a record dropped here still moves the cursor.
	if q.Topic != "" && !store.MatchTopic(q.Topic, r.Topic) {
		page.Drop()
		if rs.after.less(k) {
			rs.after = k
		}
		return nil
	}
	r.Cursor = s.cursor(k)
	rs.after = k
	return nil
}

// readSQL builds the Read statement: the page in a UNION ALL with, for a
// filtered read that comes back short, the last row it scanned, and, after
// a cursor, the retention watermark if the cursor is below it and the
// cursor itself if it is ahead of the horizon (see aheadError). It reports
// whether the read is filtered and whether it is to be read in index order.
//
// A read by aggregate is left to the planner: the aggregate's index finds
// its records, however few, and the estimate for an equality is sound.
// Other filtered reads scan the log in index order, at most scan rows of it
// (a subquery with its own LIMIT, which the filter cannot be pushed into).
func (s *Store) readSQL(q store.Query, after key, limit int) (string, [][]byte, bool, bool) {
	var p readParams
	p.int8(int64(after.txid)) // $1, an xid8: the same eight bytes
	p.int8(after.pos)
	p.int8(int64(limit)) // LIMIT takes a bigint
	var where strings.Builder
	switch {
	case q.Topic == "" || q.Topic == ">":
	case store.IsLiteral(q.Topic):
		where.WriteString(" AND topic = " + p.text(q.Topic))
	default:
		if lp := store.LiteralPrefix(q.Topic); lp != "" {
			where.WriteString(" AND topic LIKE " + p.text(likePrefix(lp)))
		}
		where.WriteString(" AND topic ~ " + p.text(topicRegexp(q.Topic)))
	}
	if q.AggregateID != "" {
		// The redundant test lets a generic plan use the partial index.
		where.WriteString(" AND aggregate_id = " + p.text(q.AggregateID) + " AND aggregate_id <> ''")
	}
	if q.Kind != "" {
		where.WriteString(" AND kind = " + p.text(q.Kind))
	}
	if !q.Since.IsZero() {
		where.WriteString(" AND time >= " + p.int8(ceilMicro(store.ClampTime(q.Since)).UnixMicro()-pgEpochMicros)) // a timestamptz
	}
	filtered := where.Len() > 0
	chunked := filtered && q.AggregateID == ""
	var scan string // the placeholder of a chunked read's scan bound
	if chunked {
		scan = p.int8(int64(max(10*limit, s.minScan)))
	}
	// The statement's text follows from the filters' placeholders (where)
	// and whether the read starts after a cursor: made once per shape,
	// as it is some kilobytes.
	shape := readShape{where: where.String(), after: after != (key{})}
	s.readSQLMu.RLock()
	sql, ok := s.readSQLs[shape]
	s.readSQLMu.RUnlock()
	if !ok {
		sql = s.buildReadSQL(where.String(), scan, after, filtered)
		s.readSQLMu.Lock()
		if s.readSQLs == nil {
			s.readSQLs = map[readShape]string{}
		}
		s.readSQLs[shape] = sql
		s.readSQLMu.Unlock()
	}
	return sql, p.values(), filtered, q.AggregateID == ""
}

// readParams collects the parameters of a Read statement in binary, in
// one buffer. Each type is the one PostgreSQL infers from where the
// statement uses it: xid8 and bigint (eight bytes each), text, and
// timestamptz (microseconds since 2000, eight bytes).
type readParams struct {
	buf  []byte
	ends []int
}

// int8 adds an eight-byte parameter and returns its placeholder.
func (p *readParams) int8(v int64) string {
	p.buf = binary.BigEndian.AppendUint64(p.buf, uint64(v))
	return p.next()
}

// text adds a text parameter and returns its placeholder.
func (p *readParams) text(v string) string {
	p.buf = append(p.buf, v...)
	return p.next()
}

func (p *readParams) next() string {
	p.ends = append(p.ends, len(p.buf))
	return "$" + strconv.Itoa(len(p.ends))
}

// values returns the parameters. None is nil (the first is eight bytes,
// so the buffer is not), which pgconn would send as NULL.
func (p *readParams) values() [][]byte {
	out := make([][]byte, len(p.ends))
	start := 0
	for i, end := range p.ends {
		out[i] = p.buf[start:end:end]
		start = end
	}
	return out
}

// readShape identifies the text of a Read statement; see readSQL.
type readShape struct {
	where string
	after bool
}

// buildReadSQL writes the Read statement for readSQL: a chunked read
// (filtered, not by aggregate) when scan, its scan bound's placeholder,
// is set.
func (s *Store) buildReadSQL(where, scan string, after key, filtered bool) string {
	chunked := scan != ""
	const cols = "txid, position, id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload"
	const blank = ", ''::text, ''::text, ''::text, ''::text, 0::bigint, 'epoch'::timestamptz, NULL::jsonb, ''::text, ''::text, ''::bytea"
	rng := "(txid, position) > ($1::xid8, $2::bigint) AND txid < current_setting('" + horizonGUC + "')::xid8"
	events := s.sql.schema + ".events"
	var b strings.Builder
	switch {
	case chunked:
		chunk := "(SELECT " + cols + " FROM " + events + " WHERE " + rng + " ORDER BY txid, position LIMIT " + scan + ") AS c"
		b.WriteString("WITH page AS (SELECT " + cols + " FROM " + chunk + " WHERE true" + where + " ORDER BY txid, position LIMIT $3) ")
		b.WriteString("SELECT 0, " + cols + " FROM page")
		// The tail is only needed, and only computed, when the page is short.
		b.WriteString(" UNION ALL SELECT 1, t.txid, t.position" + blank + " FROM (SELECT txid, position FROM (SELECT txid, position FROM " +
			events + " WHERE " + rng + " ORDER BY txid, position LIMIT " + scan + ") AS k ORDER BY txid DESC, position DESC LIMIT 1) AS t" +
			" WHERE (SELECT count(*) FROM page) < $3")
	case filtered:
		b.WriteString("(SELECT 0, " + cols + " FROM " + events + " WHERE " + rng + where + " ORDER BY txid, position LIMIT $3)")
		b.WriteString(" UNION ALL (SELECT 1, txid, position" + blank + " FROM " + events + " WHERE " + rng + " ORDER BY txid DESC, position DESC LIMIT 1)")
	default:
		b.WriteString("(SELECT 0, " + cols + " FROM " + events + " WHERE " + rng + " ORDER BY txid, position LIMIT $3)")
	}
	if after != (key{}) {
		b.WriteString(" UNION ALL SELECT 2, txid, position" + blank + " FROM " + s.sql.schema + ".retention WHERE (txid, position) > ($1::xid8, $2::bigint)")
		b.WriteString(" UNION ALL SELECT 3, $1::xid8, $2::bigint" + blank + " WHERE $1::xid8 > current_setting('" + horizonGUC + "')::xid8")
	}
	b.WriteString(" UNION ALL SELECT 4, '0'::xid8, 0::bigint" + blank + " WHERE " + s.sql.hidden)
	return b.String()
}

// likePrefix returns the LIKE pattern of topics starting with p.
func likePrefix(p string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(p) + "%"
}

// topicRegexp translates a topic pattern (see store.ValidatePattern) into
// a PostgreSQL regular expression matching the same topics.
func topicRegexp(pattern string) string {
	var b strings.Builder
	b.WriteByte('^')
	for i, seg := range strings.Split(pattern, ".") {
		if i > 0 {
			b.WriteString(`\.`)
		}
		switch seg {
		case "*":
			b.WriteString(`[^.]+`)
		case ">":
			b.WriteString(`.+`)
		default:
			for _, r := range seg {
				if r < 0x80 && !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
					b.WriteByte('\\')
				}
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('$')
	return b.String()
}
