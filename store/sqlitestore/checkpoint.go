package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/ncore-io/event/store"
)

// Checkpoint implements [store.Store].
func (s *Store) Checkpoint(ctx context.Context, name string) (store.Cursor, error) {
	if err := store.ValidateName("checkpoint name", name); err != nil {
		return "", fmt.Errorf("sqlitestore: checkpoint: %w", err)
	}
	if err := s.enter(ctx, "checkpoint"); err != nil {
		return "", err
	}
	var c string
	err := s.r.QueryRowContext(ctx, `SELECT cursor FROM event_checkpoints WHERE name = ?`, name).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", s.fail(ctx, "checkpoint "+name, err)
	}
	return store.Cursor(c), nil
}

// SetCheckpoint implements [store.Store].
func (s *Store) SetCheckpoint(ctx context.Context, name string, c store.Cursor) error {
	if err := store.ValidateName("checkpoint name", name); err != nil {
		return fmt.Errorf("sqlitestore: set checkpoint: %w", err)
	}
	if err := s.enter(ctx, "set checkpoint"); err != nil {
		return err
	}
	if _, err := decodeCursor(c); err != nil {
		return fmt.Errorf("sqlitestore: set checkpoint %s: %w", name, err)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO event_checkpoints (name, cursor) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor`, name, string(c))
	if err != nil {
		return s.fail(ctx, "set checkpoint "+name, err)
	}
	return nil
}
