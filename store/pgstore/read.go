package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ncore-io/event/store"
)

// queries holds the fixed SQL of a store, with its schema filled in.
type queries struct {
	schema        string
	append        string
	loadIDs       string
	load          string
	loadAggregate string
}

// recordCols are the columns that scanRecord reads, in order.
const recordCols = "position, id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload"

func buildQueries(schema string) queries {
	return queries{
		schema:        schema,
		append:        "SELECT o_position, o_version FROM " + schema + ".append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
		loadIDs:       "SELECT " + recordCols + " FROM " + schema + ".events WHERE id = ANY($1)",
		load:          "SELECT " + recordCols + " FROM " + schema + ".events WHERE id = $1",
		loadAggregate: "SELECT " + recordCols + " FROM " + schema + ".events WHERE aggregate_id = $1 AND version >= $2 ORDER BY version",
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
	if err := s.enter("load aggregate"); err != nil {
		return nil, err
	}
	defer s.exit()
	if aggregateID == "" {
		return nil, fmt.Errorf("pgstore: load aggregate: empty aggregate ID")
	}
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

// Row kinds in a Read result: the page, the last row of the log below the
// horizon (how far a filtered read looked), and the retention watermark
// when it lies after the cursor.
const (
	rowRecord = iota
	rowTail
	rowExpired
)

// Read returns the next page of records matching q, as [store.Store]
// describes.
//
// It only returns records of transactions older than the oldest
// transaction of this database still running (see horizonSQL), in
// (transaction ID, position) order. Below that horizon no record can appear
// any more, so a cursor never passes a record that commits later. A
// filtered read that comes back short also moves the cursor past the
// records it looked at, so the next read does not look at them again. The
// page, the last record below the horizon and the retention check come from
// one statement, hence one snapshot.
func (s *Store) Read(ctx context.Context, q store.Query) ([]store.Record, store.Cursor, error) {
	if err := s.enter("read"); err != nil {
		return nil, q.After, err
	}
	defer s.exit()
	after, err := s.parseCursor(q.After)
	if err != nil {
		return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
	}
	limit := q.Limit
	switch {
	case limit < 0:
		return nil, q.After, fmt.Errorf("pgstore: read: negative limit %d", limit)
	case limit == 0:
		limit = store.DefaultReadLimit
	case limit > store.MaxReadLimit:
		limit = store.MaxReadLimit
	}
	if q.Topic != "" {
		if err := store.ValidatePattern(q.Topic); err != nil {
			return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
		}
	}
	h, err := s.horizon(ctx)
	if err != nil {
		return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
	}
	sql, params, filtered := s.readSQL(q, after, limit, h)
	rows, err := s.pool.Query(ctx, sql, params...)
	if err != nil {
		return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
	}
	defer rows.Close()

	recs := make([]store.Record, 0, min(limit, 64))
	var tail key
	var expired bool
	for rows.Next() {
		var kind int
		var k key
		var r store.Record
		var meta []byte
		if err := rows.Scan(&kind, &k.txid, &k.pos, &r.ID, &r.Topic, &r.Kind, &r.AggregateID, &r.Version, &r.Time, &meta, &r.PayloadType, &r.ContentType, &r.Payload); err != nil {
			return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
		}
		switch kind {
		case rowTail:
			tail = k
			continue
		case rowExpired:
			expired = true
			continue
		}
		if err := finishRecord(&r, meta); err != nil {
			return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
		}
		// The SQL filter is exact; this guards the translation of the
		// pattern, and a record dropped here still moves the cursor.
		if q.Topic != "" && !store.MatchTopic(q.Topic, r.Topic) {
			if after.less(k) {
				after = k
			}
			continue
		}
		r.Position = k.pos
		r.Cursor = s.cursor(k)
		recs = append(recs, r)
		after = k
	}
	if err := rows.Err(); err != nil {
		return nil, q.After, fmt.Errorf("pgstore: read: %w", err)
	}
	if expired {
		return nil, q.After, fmt.Errorf("pgstore: read: %w", store.ErrCursorExpired)
	}
	if filtered && len(recs) < limit && after.less(tail) {
		after = tail
	}
	if after == (key{}) {
		return recs, q.After, nil
	}
	return recs, s.cursor(after), nil
}

// readSQL builds the Read statement: the page in a UNION ALL with, for a
// filtered read, the last row below the horizon, and, after a cursor, the
// retention watermark if the cursor is below it.
func (s *Store) readSQL(q store.Query, after key, limit int, h uint64) (string, []any, bool) {
	params := []any{after.txid, after.pos, limit, h}
	var where strings.Builder
	arg := func(v any) string {
		params = append(params, v)
		return "$" + strconv.Itoa(len(params))
	}
	switch {
	case q.Topic == "" || q.Topic == ">":
	case store.IsLiteral(q.Topic):
		where.WriteString(" AND topic = " + arg(q.Topic))
	default:
		if p := store.LiteralPrefix(q.Topic); p != "" {
			where.WriteString(" AND topic LIKE " + arg(likePrefix(p)))
		}
		where.WriteString(" AND topic ~ " + arg(topicRegexp(q.Topic)))
	}
	if q.AggregateID != "" {
		where.WriteString(" AND aggregate_id = " + arg(q.AggregateID))
	}
	if q.Kind != "" {
		where.WriteString(" AND kind = " + arg(q.Kind))
	}
	if !q.Since.IsZero() {
		where.WriteString(" AND time >= " + arg(ceilMicro(q.Since)))
	}
	filtered := where.Len() > 0
	const horizon = "txid < $4::xid8"
	const after_ = "(txid, position) > ($1::xid8, $2::bigint)"
	var b strings.Builder
	b.WriteString("(SELECT 0, txid, position, id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload FROM ")
	b.WriteString(s.sql.schema + ".events WHERE " + after_ + " AND " + horizon + where.String())
	b.WriteString(" ORDER BY txid, position LIMIT $3)")
	const blank = ", ''::text, ''::text, ''::text, ''::text, 0::bigint, 'epoch'::timestamptz, NULL::jsonb, ''::text, ''::text, ''::bytea"
	if filtered {
		b.WriteString(" UNION ALL (SELECT 1, txid, position" + blank + " FROM " + s.sql.schema + ".events WHERE " + after_ + " AND " + horizon + " ORDER BY txid DESC, position DESC LIMIT 1)")
	}
	if after != (key{}) {
		b.WriteString(" UNION ALL SELECT 2, txid, position" + blank + " FROM " + s.sql.schema + ".retention WHERE " + after_)
	}
	return b.String(), params, filtered
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
