package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ncore-io/event/store"
)

// PutDeadLetter stores d, replacing an earlier dead letter of the same
// subscription and event ID. A zero d.Time is set to now.
func (s *Store) PutDeadLetter(ctx context.Context, d store.DeadLetter) error {
	if err := s.enter("put dead letter"); err != nil {
		return err
	}
	defer s.exit()
	r := d.Record
	switch {
	case d.Subscription == "":
		return fmt.Errorf("pgstore: put dead letter: %w: empty subscription", store.ErrInvalidRecord)
	case r.ID == "":
		return fmt.Errorf("pgstore: put dead letter: %w: record has an empty ID", store.ErrInvalidRecord)
	case d.Attempts < 0:
		return fmt.Errorf("pgstore: put dead letter %s/%s: %w: negative attempts %d", d.Subscription, r.ID, store.ErrInvalidRecord, d.Attempts)
	}
	for _, f := range [...]struct{ name, v string }{
		{"subscription", d.Subscription}, {"error", d.Error}, {"ID", r.ID}, {"topic", r.Topic}, {"kind", r.Kind},
		{"aggregate ID", r.AggregateID}, {"payload type", r.PayloadType}, {"content type", r.ContentType},
	} {
		if err := checkText(f.v); err != nil {
			return fmt.Errorf("pgstore: put dead letter: %w: %s %w", store.ErrInvalidRecord, f.name, err)
		}
	}
	var meta []byte
	if len(r.Metadata) > 0 {
		for k, v := range r.Metadata {
			if checkText(k) != nil || checkText(v) != nil {
				return fmt.Errorf("pgstore: put dead letter: %w: metadata %q is not valid UTF-8 or contains NUL", store.ErrInvalidRecord, k)
			}
		}
		var err error
		if meta, err = json.Marshal(r.Metadata); err != nil {
			return fmt.Errorf("pgstore: put dead letter: metadata: %w", err)
		}
	}
	at := d.Time
	if at.IsZero() {
		at = time.Now()
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
		r.PayloadType, r.ContentType, r.Payload, d.Error, d.Attempts, at.UTC())
	if err != nil {
		return fmt.Errorf("pgstore: put dead letter %s/%s: %w", d.Subscription, r.ID, err)
	}
	return nil
}

// DeadLetters lists the dead letters of a subscription (all if empty),
// oldest first by their Time, at most limit (0 means
// store.DefaultReadLimit; larger than store.MaxReadLimit is clamped).
func (s *Store) DeadLetters(ctx context.Context, subscription string, limit int) ([]store.DeadLetter, error) {
	if err := s.enter("dead letters"); err != nil {
		return nil, err
	}
	defer s.exit()
	limit, err := store.PageLimit(limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: dead letters: %w", err)
	}
	rows, err := s.pool.Query(ctx, `SELECT subscription, event_id, topic, kind, aggregate_id, version, position, time, metadata,
	payload_type, content_type, payload, error, attempts, dead_at
FROM `+s.schema+`.dead_letters WHERE $1 = '' OR subscription = $1 ORDER BY dead_at, seq LIMIT $2`, subscription, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: dead letters: %w", err)
	}
	dls, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DeadLetter, error) {
		var d store.DeadLetter
		var meta []byte
		r := &d.Record
		if err := row.Scan(&d.Subscription, &r.ID, &r.Topic, &r.Kind, &r.AggregateID, &r.Version, &r.Position, &r.Time, &meta,
			&r.PayloadType, &r.ContentType, &r.Payload, &d.Error, &d.Attempts, &d.Time); err != nil {
			return d, err
		}
		d.Time = d.Time.UTC()
		return d, finishRecord(r, meta)
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: dead letters: %w", err)
	}
	return dls, nil
}

// DeleteDeadLetter removes the dead letter of the subscription and event ID,
// or fails with store.ErrNotFound.
func (s *Store) DeleteDeadLetter(ctx context.Context, subscription, eventID string) error {
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
