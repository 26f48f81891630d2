package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ncore-io/event/store"
)

// Checkpoint returns the cursor last saved under name, or the zero Cursor.
// A name that [store.ValidateName] refuses fails with [store.ErrInvalidName].
func (s *Store) Checkpoint(ctx context.Context, name string) (store.Cursor, error) {
	if err := store.ValidateName("checkpoint name", name); err != nil {
		return "", fmt.Errorf("pgstore: checkpoint: %w", err)
	}
	if err := s.enter("checkpoint"); err != nil {
		return "", err
	}
	defer s.exit()
	var c string
	err := s.pool.QueryRow(ctx, "SELECT cursor FROM "+s.schema+".checkpoints WHERE name = $1", name).Scan(&c)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("pgstore: checkpoint %s: %w", name, err)
	}
	return store.Cursor(c), nil
}

// SetCheckpoint saves c under name, replacing what was there. A name that
// [store.ValidateName] refuses fails with [store.ErrInvalidName].
func (s *Store) SetCheckpoint(ctx context.Context, name string, c store.Cursor) error {
	if err := store.ValidateName("checkpoint name", name); err != nil {
		return fmt.Errorf("pgstore: set checkpoint: %w", err)
	}
	if err := s.enter("set checkpoint"); err != nil {
		return err
	}
	defer s.exit()
	if _, err := s.parseCursor(c); err != nil {
		return fmt.Errorf("pgstore: set checkpoint %s: %w", name, err)
	}
	_, err := s.pool.Exec(ctx, "INSERT INTO "+s.schema+".checkpoints (name, cursor) VALUES ($1, $2) "+
		"ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, updated_at = now()", name, string(c))
	if err != nil {
		return fmt.Errorf("pgstore: set checkpoint %s: %w", name, err)
	}
	return nil
}
