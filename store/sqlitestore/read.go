package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ncore-io/event/store"
)

// Load implements [store.Store].
func (s *Store) Load(ctx context.Context, id string) (store.Record, error) {
	if err := s.enter(ctx, "load"); err != nil {
		return store.Record{}, err
	}
	r, err := scanRecord(s.r.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM event_log WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("sqlitestore: load %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, s.fail(ctx, "load "+id, err)
	}
	return r, nil
}

// LoadAggregate implements [store.Store].
func (s *Store) LoadAggregate(ctx context.Context, aggregateID string, fromVersion int64) ([]store.Record, error) {
	if err := store.ValidateName("aggregate ID", aggregateID); err != nil {
		return nil, fmt.Errorf("sqlitestore: load aggregate: %w", err)
	}
	if err := s.enter(ctx, "load aggregate"); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT `+recordColumns+` FROM event_log WHERE aggregate_id = ? AND version >= ? ORDER BY version`, aggregateID, fromVersion)
	if err != nil {
		return nil, s.fail(ctx, "load aggregate "+aggregateID, err)
	}
	defer rows.Close()
	var out []store.Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, s.fail(ctx, "load aggregate "+aggregateID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "load aggregate "+aggregateID, err)
	}
	return out, nil
}

// defaultMinScan is the fewest positions of the log a filtered Read looks
// at before it gives up on filling its page and returns what it found with
// a cursor past what it looked at; it looks at up to 10 times its limit.
// The bound keeps one call's work (and its read transaction) in proportion
// to its page however rare the matches are, while the cursor it returns
// keeps a read through the whole log linear. pgstore applies the same rule.
const defaultMinScan = 10_000

// Read implements [store.Store].
//
// A read by exact topic or by aggregate finds its records through an index
// (any kind or time filter is applied to what the index finds), and one
// without filters takes the log as it comes: each fills its page while
// records remain. Other filtered reads (a wildcard pattern, or a kind or a
// time alone) walk the log in position order and look at no more than
// max(10×limit, 10,000) positions per call; when their page is not full by
// then they return the records they found, perhaps none, with a cursor past
// the positions they looked at, and the next Read goes on from there.
// Wildcard patterns are narrowed in SQL, by their literal prefix and a GLOB
// that every matching topic matches, and matched exactly in Go.
func (s *Store) Read(ctx context.Context, q store.Query) ([]store.Record, store.Cursor, error) {
	if err := s.enter(ctx, "read"); err != nil {
		return nil, q.After, err
	}
	if q.Topic != "" {
		if err := store.ValidatePattern(q.Topic); err != nil {
			return nil, q.After, fmt.Errorf("sqlitestore: read: %w", err)
		}
	}
	after, err := decodeCursor(q.After)
	if err != nil {
		return nil, q.After, fmt.Errorf("sqlitestore: read: %w", err)
	}
	limit, err := store.PageLimit(q.Limit)
	if err != nil {
		return nil, q.After, fmt.Errorf("sqlitestore: read: %w", err)
	}

	exact := q.Topic != "" && q.Topic != ">" && store.IsLiteral(q.Topic)
	matchInGo := q.Topic != "" && q.Topic != ">" && !exact
	// A read by aggregate or exact topic takes its index, however its
	// other filters thin it out; other filtered reads walk the log.
	bounded := q.AggregateID == "" && !exact && (matchInGo || q.Kind != "" || !q.Since.IsZero())
	var (
		where strings.Builder
		args  []any
	)
	where.WriteString(`position > ?`)
	args = append(args, nil) // the position, set per query below
	if bounded {
		where.WriteString(` AND position <= ?`)
		args = append(args, nil) // the end of the walk, set below
	}
	switch {
	case q.Topic == "" || q.Topic == ">":
	case !matchInGo:
		where.WriteString(` AND topic = ?`)
		args = append(args, q.Topic)
	default:
		if p := store.LiteralPrefix(q.Topic); p != "" {
			// p ends in "."; "/" is the next byte, so this is a prefix range.
			where.WriteString(` AND topic >= ? AND topic < ?`)
			args = append(args, p, p[:len(p)-1]+"/")
		}
		where.WriteString(` AND topic GLOB ?`)
		args = append(args, topicGlob(q.Topic))
	}
	if q.AggregateID != "" {
		where.WriteString(` AND aggregate_id = ?`)
		args = append(args, q.AggregateID)
	}
	if q.Kind != "" {
		where.WriteString(` AND kind = ?`)
		args = append(args, q.Kind)
	}
	if !q.Since.IsZero() {
		since := store.ClampTime(q.Since)
		where.WriteString(` AND time_us >= ?`)
		args = append(args, since.UnixMicro()+boolInt(since.Nanosecond()%1000 != 0))
	}
	from := `event_log`
	scan := limit
	switch {
	case bounded:
		// Walk the primary key: the topic index would find a prefix's
		// records at every position, however many.
		from = `event_log NOT INDEXED`
		scan = max(10*limit, s.minScan)
	case matchInGo:
		scan = max(limit, 256)
	}
	query := `SELECT ` + recordColumns + ` FROM ` + from + ` WHERE ` + where.String() + ` ORDER BY position LIMIT ` + strconv.Itoa(scan)

	// One read transaction: the retention check, the bounds and the pages
	// see the same snapshot.
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, q.After, s.fail(ctx, "read", err)
	}
	defer tx.Rollback()
	// end is the last position handed out: later appends, including
	// one in a caller's transaction on the writer, get higher ones.
	var low, end, first, hi int64
	err = tx.QueryRowContext(ctx, `SELECT (SELECT value FROM event_meta WHERE key = 'low_watermark'),
		coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'event_log'), 0),
		coalesce((SELECT position FROM event_log WHERE position > ? ORDER BY position LIMIT 1), 0)`, after).Scan(&low, &end, &first)
	if err != nil {
		return nil, q.After, s.fail(ctx, "read", err)
	}
	if after > 0 && after < low {
		return nil, q.After, fmt.Errorf("sqlitestore: read after %s: %w (records up to position %d were deleted)", q.After, store.ErrCursorExpired, low)
	}
	if after > end {
		return nil, q.After, fmt.Errorf("sqlitestore: read after %s: %w: it is past the end of the log (position %d)", q.After, store.ErrInvalidCursor, end)
	}
	if end == after || first == 0 {
		return nil, q.After, nil // nothing after the cursor
	}
	if bounded {
		// The walk starts at the first record, not at the cursor, so
		// that it does not spend itself on positions retention emptied.
		hi = first - 1 + int64(scan)
		args[1] = hi
	}

	// At most end-after records remain: room for them all at once, and
	// little for a poll at the end of the log.
	out := make([]store.Record, 0, min(int64(limit), max(end-after, 0)))
	last := after
	for {
		args[0] = last
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, q.After, s.fail(ctx, "read", err)
		}
		n := 0
		var w row
		for len(out) < limit && rows.Next() {
			n++
			if err := scanRow(rows, &w); err != nil {
				rows.Close()
				return nil, q.After, s.fail(ctx, "read", err)
			}
			last = w.position
			if matchInGo && !store.MatchTopic(q.Topic, w.topic) {
				continue
			}
			r, err := w.record()
			if err != nil {
				rows.Close()
				return nil, q.After, s.fail(ctx, "read", err)
			}
			r.Cursor = encodeCursor(r.Position)
			out = append(out, r)
			w = row{}
		}
		if err := rows.Close(); err != nil {
			return nil, q.After, s.fail(ctx, "read", err)
		}
		if err := rows.Err(); err != nil {
			return nil, q.After, s.fail(ctx, "read", err)
		}
		// A bounded read fetched its whole walk at once.
		if bounded || !matchInGo || len(out) == limit || n < scan {
			break
		}
	}
	if bounded && len(out) < limit {
		// The walk looked at every position up to hi, or to the end.
		last = max(last, min(hi, end))
	}
	if last == after {
		return out, q.After, nil
	}
	return out, encodeCursor(last), nil
}

// topicGlob translates a topic pattern (see store.ValidatePattern) into a
// GLOB that every topic the pattern matches matches too: a wildcard
// segment becomes "*", which also matches dots, so store.MatchTopic still
// decides. It lets SQLite drop most records that do not match before they
// are copied out to Go.
func topicGlob(pattern string) string {
	var b strings.Builder
	for i, seg := range strings.Split(pattern, ".") {
		if i > 0 {
			b.WriteByte('.')
		}
		if seg == "*" || seg == ">" {
			b.WriteByte('*')
			continue
		}
		for _, r := range seg {
			if r == '[' || r == '?' { // '*' cannot occur in a literal segment
				b.WriteByte('[')
				b.WriteRune(r)
				b.WriteByte(']')
				continue
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
