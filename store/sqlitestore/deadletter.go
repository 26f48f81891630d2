package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ncore-io/event/store"
)

// PutDeadLetter implements [store.DeadLetterStore]. A dead letter that
// [store.ValidateDeadLetter] refuses fails with [store.ErrInvalidRecord].
func (s *Store) PutDeadLetter(ctx context.Context, d store.DeadLetterRecord) error {
	if err := store.ValidateDeadLetter(d); err != nil {
		return fmt.Errorf("sqlitestore: put dead letter: %w", err)
	}
	if err := s.enter(ctx, "put dead letter"); err != nil {
		return err
	}
	w, err := toRow(&d.Record)
	if err != nil {
		return fmt.Errorf("sqlitestore: put dead letter: %w", err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO event_dead_letters
		(subscription, event_id, position, topic, kind, aggregate_id, version, time_us, metadata, payload_type, content_type, payload, error, attempts, dead_us)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (subscription, event_id) DO UPDATE SET
			position = excluded.position, topic = excluded.topic, kind = excluded.kind, aggregate_id = excluded.aggregate_id,
			version = excluded.version, time_us = excluded.time_us, metadata = excluded.metadata,
			payload_type = excluded.payload_type, content_type = excluded.content_type, payload = excluded.payload,
			error = excluded.error, attempts = excluded.attempts, dead_us = excluded.dead_us`,
		d.Subscription, w.id, d.Record.Position, w.topic, w.kind, nullString(w.aggregateID), d.Record.Version, w.timeUS,
		nullString(w.metadata), w.payloadType, w.contentType, w.payload, d.Error, d.Attempts, d.Time.UnixMicro())
	if err != nil {
		return s.fail(ctx, "put dead letter", err)
	}
	return nil
}

// deadLetterColumns are the columns that scanDeadLetter reads, in order.
const deadLetterColumns = `position, event_id, topic, kind, coalesce(aggregate_id, ''), version, time_us, coalesce(metadata, ''), payload_type, content_type, payload, payload IS NULL, subscription, error, attempts, dead_us`

// scanDeadLetter reads the deadLetterColumns of a row.
func scanDeadLetter(sc interface{ Scan(...any) error }) (store.DeadLetterRecord, error) {
	var (
		w      row
		isNull bool
		d      store.DeadLetterRecord
		deadUS int64
	)
	if err := sc.Scan(&w.position, &w.id, &w.topic, &w.kind, &w.aggregateID, &w.version, &w.timeUS, &w.metadata,
		&w.payloadType, &w.contentType, &w.payload, &isNull, &d.Subscription, &d.Error, &d.Attempts, &deadUS); err != nil {
		return d, err
	}
	if w.payload == nil && !isNull {
		w.payload = []byte{}
	}
	var err error
	if d.Record, err = w.record(); err != nil {
		return d, err
	}
	d.Time = unixMicroUTC(deadUS)
	return d, nil
}

// DeadLetter implements [store.DeadLetterLookup].
func (s *Store) DeadLetter(ctx context.Context, subscription, eventID string) (store.DeadLetterRecord, error) {
	if err := store.ValidateDeadLetterKey(subscription, eventID); err != nil {
		return store.DeadLetterRecord{}, fmt.Errorf("sqlitestore: dead letter: %w", err)
	}
	if err := s.enter(ctx, "dead letter"); err != nil {
		return store.DeadLetterRecord{}, err
	}
	d, err := scanDeadLetter(s.r.QueryRowContext(ctx, `SELECT `+deadLetterColumns+` FROM event_dead_letters WHERE subscription = ? AND event_id = ?`, subscription, eventID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.DeadLetterRecord{}, fmt.Errorf("sqlitestore: dead letter (%s, %s): %w", subscription, eventID, store.ErrNotFound)
	}
	if err != nil {
		return store.DeadLetterRecord{}, s.fail(ctx, "dead letter", err)
	}
	return d, nil
}

// DeadLetters implements [store.DeadLetterStore]. Dead letters with the same
// Time are listed by subscription and event ID.
func (s *Store) DeadLetters(ctx context.Context, subscription string, limit int) ([]store.DeadLetterRecord, error) {
	if subscription != "" {
		if err := store.ValidateName("subscription", subscription); err != nil {
			return nil, fmt.Errorf("sqlitestore: dead letters: %w", err)
		}
	}
	if err := s.enter(ctx, "dead letters"); err != nil {
		return nil, err
	}
	limit, err := store.PageLimit(limit)
	if err != nil {
		return nil, fmt.Errorf("sqlitestore: dead letters: %w", err)
	}
	query := `SELECT ` + deadLetterColumns + ` FROM event_dead_letters WHERE (? = '' OR subscription = ?) ORDER BY dead_us, subscription, event_id LIMIT ?`
	rows, err := s.r.QueryContext(ctx, query, subscription, subscription, limit)
	if err != nil {
		return nil, s.fail(ctx, "dead letters", err)
	}
	defer rows.Close()
	var out []store.DeadLetterRecord
	for rows.Next() {
		d, err := scanDeadLetter(rows)
		if err != nil {
			return nil, s.fail(ctx, "dead letters", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "dead letters", err)
	}
	return out, nil
}

// DeleteDeadLetter implements [store.DeadLetterStore].
func (s *Store) DeleteDeadLetter(ctx context.Context, subscription, eventID string) error {
	if err := store.ValidateDeadLetterKey(subscription, eventID); err != nil {
		return fmt.Errorf("sqlitestore: delete dead letter: %w", err)
	}
	if err := s.enter(ctx, "delete dead letter"); err != nil {
		return err
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM event_dead_letters WHERE subscription = ? AND event_id = ?`, subscription, eventID)
	if err != nil {
		return s.fail(ctx, "delete dead letter", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.fail(ctx, "delete dead letter", err)
	}
	if n == 0 {
		return fmt.Errorf("sqlitestore: delete dead letter (%s, %s): %w", subscription, eventID, store.ErrNotFound)
	}
	return nil
}
