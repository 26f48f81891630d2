package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ncore-io/event/store"
)

// PutDeadLetter stores d, replacing an earlier dead letter of the same
// subscription and event ID. A dead letter that [store.ValidateDeadLetter]
// refuses fails with [store.ErrInvalidRecord].
func (s *Store) PutDeadLetter(ctx context.Context, d store.DeadLetterRecord) error {
	if err := store.ValidateDeadLetter(d); err != nil {
		return fmt.Errorf("pgstore: put dead letter: %w", err)
	}
	if err := s.enter("put dead letter"); err != nil {
		return err
	}
	defer s.exit()
	r := d.Record
	var meta json.RawMessage // sent as JSON in every query mode, unlike []byte
	if len(r.Metadata) > 0 {
		var err error
		if meta, err = json.Marshal(r.Metadata); err != nil {
			return fmt.Errorf("pgstore: put dead letter: metadata: %w", err)
		}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO `+s.schema+`.dead_letters
	(subscription, event_id, topic, kind, aggregate_id, version, position, time, metadata, payload_type, content_type, payload, error, attempts, dead_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (subscription, event_id) DO UPDATE SET
	topic = excluded.topic, kind = excluded.kind, aggregate_id = excluded.aggregate_id, version = excluded.version,
	position = excluded.position, time = excluded.time, metadata = excluded.metadata,
	payload_type = excluded.payload_type, content_type = excluded.content_type, payload = excluded.payload,
	error = excluded.error, attempts = excluded.attempts, dead_at = excluded.dead_at`,
		d.Subscription, r.ID, r.Topic, r.Kind, r.AggregateID, r.Version, r.Position, r.Time.UTC(), meta,
		r.PayloadType, r.ContentType, r.Payload, d.Error, d.Attempts, d.Time.UTC())
	if err != nil {
		return fmt.Errorf("pgstore: put dead letter %s/%s: %w", d.Subscription, r.ID, err)
	}
	return nil
}

// deadLetterCols are the columns that scanDeadLetter reads, in order.
const deadLetterCols = `subscription, event_id, topic, kind, aggregate_id, version, position, time, metadata,
	payload_type, content_type, payload, error, attempts, dead_at`

func scanDeadLetter(row pgx.CollectableRow) (store.DeadLetterRecord, error) {
	var d store.DeadLetterRecord
	var meta []byte
	r := &d.Record
	if err := row.Scan(&d.Subscription, &r.ID, &r.Topic, &r.Kind, &r.AggregateID, &r.Version, &r.Position, &r.Time, &meta,
		&r.PayloadType, &r.ContentType, &r.Payload, &d.Error, &d.Attempts, &d.Time); err != nil {
		return d, err
	}
	d.Time = d.Time.UTC()
	return d, finishRecord(r, meta)
}

// DeadLetter returns the dead letter of the subscription and event ID, or
// fails with store.ErrNotFound.
func (s *Store) DeadLetter(ctx context.Context, subscription, eventID string) (store.DeadLetterRecord, error) {
	if err := store.ValidateDeadLetterKey(subscription, eventID); err != nil {
		return store.DeadLetterRecord{}, fmt.Errorf("pgstore: dead letter: %w", err)
	}
	if err := s.enter("dead letter"); err != nil {
		return store.DeadLetterRecord{}, err
	}
	defer s.exit()
	rows, err := s.pool.Query(ctx, `SELECT `+deadLetterCols+` FROM `+s.schema+`.dead_letters WHERE subscription = $1 AND event_id = $2`, subscription, eventID)
	if err != nil {
		return store.DeadLetterRecord{}, fmt.Errorf("pgstore: dead letter %s/%s: %w", subscription, eventID, err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanDeadLetter)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.DeadLetterRecord{}, fmt.Errorf("pgstore: dead letter %s/%s: %w", subscription, eventID, store.ErrNotFound)
	}
	if err != nil {
		return store.DeadLetterRecord{}, fmt.Errorf("pgstore: dead letter %s/%s: %w", subscription, eventID, err)
	}
	return d, nil
}

// DeadLetters lists the dead letters of a subscription (all if empty),
// oldest first by their Time, at most limit (0 means
// store.DefaultReadLimit; larger than store.MaxReadLimit is clamped).
func (s *Store) DeadLetters(ctx context.Context, subscription string, limit int) ([]store.DeadLetterRecord, error) {
	if subscription != "" {
		if err := store.ValidateName("subscription", subscription); err != nil {
			return nil, fmt.Errorf("pgstore: dead letters: %w", err)
		}
	}
	if err := s.enter("dead letters"); err != nil {
		return nil, err
	}
	defer s.exit()
	limit, err := store.PageLimit(limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: dead letters: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT `+deadLetterCols+`
FROM `+s.schema+`.dead_letters WHERE $1 = '' OR subscription = $1 ORDER BY dead_at, seq LIMIT $2`, subscription, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: dead letters: %w", err)
	}
	dls, err := pgx.CollectRows(rows, scanDeadLetter)
	if err != nil {
		return nil, fmt.Errorf("pgstore: dead letters: %w", err)
	}
	return dls, nil
}

// DeleteDeadLetter removes the dead letter of the subscription and event ID,
// or fails with store.ErrNotFound.
func (s *Store) DeleteDeadLetter(ctx context.Context, subscription, eventID string) error {
	if err := store.ValidateDeadLetterKey(subscription, eventID); err != nil {
		return fmt.Errorf("pgstore: delete dead letter: %w", err)
	}
	if err := s.enter("delete dead letter"); err != nil {
		return err
	}
	defer s.exit()
	tag, err := s.pool.Exec(ctx, "DELETE FROM "+s.schema+".dead_letters WHERE subscription = $1 AND event_id = $2", subscription, eventID)
	if err != nil {
		return fmt.Errorf("pgstore: delete dead letter %s/%s: %w", subscription, eventID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("pgstore: delete dead letter %s/%s: %w", subscription, eventID, store.ErrNotFound)
	}
	return nil
}
