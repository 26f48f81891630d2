package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ncore-io/event/store"
)

// SchemaVersion is the version of the database schema this package creates
// and understands. Open migrates older event databases to it and refuses
// newer ones.
const SchemaVersion = 2

// application marks a database as an event database in event_meta.
const application = "github.com/ncore-io/event/store/sqlitestore"

// schemaFS holds one script per schema version: schema/N.sql migrates
// version N-1 to N (version 0 being an empty file).
//
//go:embed schema/*.sql
var schemaFS embed.FS

// migrate brings the database to SchemaVersion, or explains why it cannot.
// It runs in one IMMEDIATE transaction, so that of two processes opening a
// new file at once one creates the schema and the other waits, then finds
// it.
func migrate(ctx context.Context, db *sql.DB, cfg *config, path string) error {
	tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the writer DSN sets _txlock
	if err != nil {
		return openError(path, err)
	}
	defer tx.Rollback()

	var marked int
	err = tx.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'event_meta'`).Scan(&marked)
	if err != nil {
		return openError(path, err)
	}
	version := 0
	if marked == 0 {
		var tables []string
		rows, err := tx.QueryContext(ctx, `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name LIMIT 5`)
		if err != nil {
			return openError(path, err)
		}
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return openError(path, err)
			}
			tables = append(tables, name)
		}
		if err := rows.Close(); err != nil {
			return openError(path, err)
		}
		if len(tables) > 0 {
			return fmt.Errorf("sqlitestore: open %s: not an event database: it has tables (%v) but no event_meta table; "+
				"open a new file, or one that sqlitestore created, and create other tables after Open", path, tables)
		}
	} else {
		var app, ver sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT (SELECT value FROM event_meta WHERE key = 'application'), (SELECT value FROM event_meta WHERE key = 'schema_version')`).Scan(&app, &ver)
		if err != nil {
			return fmt.Errorf("sqlitestore: open %s: not an event database: reading event_meta: %w", path, err)
		}
		if app.String != application {
			return fmt.Errorf("sqlitestore: open %s: not an event database: event_meta names application %q, want %q", path, app.String, application)
		}
		version, err = strconv.Atoi(ver.String)
		if err != nil || version < 1 {
			return fmt.Errorf("sqlitestore: open %s: event database has an invalid schema version %q", path, ver.String)
		}
		if version > SchemaVersion {
			return fmt.Errorf("sqlitestore: open %s: event database has schema version %d, newer than version %d that this version of sqlitestore supports; upgrade github.com/ncore-io/event",
				path, version, SchemaVersion)
		}
	}
	if version == SchemaVersion {
		if err := checkPartitions(ctx, tx, cfg, path); err != nil {
			return err
		}
		// Nothing to migrate, but write (a no-op, rolled back) all the same:
		// SQLite opens a file it may not write read-only, without a word,
		// and the first Append would be the first to fail.
		if _, err := tx.ExecContext(ctx, `UPDATE event_meta SET value = value WHERE key = 'application'`); err != nil {
			return openError(path, err)
		}
		return nil // the deferred rollback ends the transaction
	}
	for v := version + 1; v <= SchemaVersion; v++ {
		script, err := schemaFS.ReadFile(fmt.Sprintf("schema/%d.sql", v))
		if err != nil {
			return fmt.Errorf("sqlitestore: open %s: missing migration to schema version %d: %w", path, v, err)
		}
		if _, err := tx.ExecContext(ctx, string(script)); err != nil {
			return fmt.Errorf("sqlitestore: open %s: migrating to schema version %d: %w", path, v, err)
		}
		if v == 2 {
			if err := partitionLog(ctx, tx, cfg); err != nil {
				return fmt.Errorf("sqlitestore: open %s: migrating to schema version %d: %w", path, v, err)
			}
		}
		if cfg.logger != nil {
			cfg.logger.InfoContext(ctx, "sqlitestore: migrated event database", "path", path, "from", v-1, "to", v)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO event_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, strconv.Itoa(SchemaVersion)); err != nil {
		return openError(path, err)
	}
	if err := tx.Commit(); err != nil {
		return openError(path, err)
	}
	return nil
}

// migrateWhenFree runs migrate, again while the first connection to a
// new file fails with SQLITE_BUSY, up to the busy timeout. Processes that
// create one file at once contend for switching it to WAL mode, and
// SQLite reports that contention at once, without waiting as the busy
// timeout has it wait for locks.
func migrateWhenFree(ctx context.Context, db *sql.DB, cfg *config, path string) error {
	deadline := time.Now().Add(cfg.busyTimeout)
	wait := time.Millisecond
	for {
		err := migrate(ctx, db, cfg, path)
		if err == nil || !isBusy(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// partitionLog stores the partition count and gives every record its
// partition: SQLite cannot compute store.Partition, so Go does, in pages
// by position. It makes no index on the partition: see indexPartitions.
func partitionLog(ctx context.Context, tx *sql.Tx, cfg *config) error {
	if cfg.partitions == 0 {
		cfg.partitions = store.DefaultPartitions
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO event_meta (key, value) VALUES ('partitions', ?)`, cfg.partitions); err != nil {
		return err
	}
	n := uint32(cfg.partitions)
	var after int64
	for {
		rows, err := tx.QueryContext(ctx, `SELECT position, id, coalesce(aggregate_id, '') FROM event_log WHERE position > ? ORDER BY position LIMIT 1000`, after)
		if err != nil {
			return err
		}
		var pos, parts []int64
		for rows.Next() {
			var p int64
			var id, agg string
			if err := rows.Scan(&p, &id, &agg); err != nil {
				rows.Close()
				return err
			}
			pos, parts = append(pos, p), append(parts, int64(store.PartitionKey(agg, id)%n))
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		if len(pos) == 0 {
			break
		}
		for i := range pos {
			if _, err := tx.ExecContext(ctx, `UPDATE event_log SET part = ? WHERE position = ?`, parts[i], pos[i]); err != nil {
				return err
			}
		}
		after = pos[len(pos)-1]
	}
	return nil
}

// checkPartitions reads the stored partition count into cfg, failing if
// WithPartitions asked for another.
func checkPartitions(ctx context.Context, tx *sql.Tx, cfg *config, path string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT value FROM event_meta WHERE key = 'partitions'`).Scan(&n); err != nil {
		return openError(path, err)
	}
	if cfg.partitions != 0 && cfg.partitions != n {
		return fmt.Errorf("sqlitestore: open %s: the log has %d partitions, fixed when it was created; WithPartitions(%d) cannot change it", path, n, cfg.partitions)
	}
	cfg.partitions = n
	return nil
}

// openError wraps an error from opening path, naming what is wrong with
// the file or its directory when it can tell (see explain).
func openError(path string, err error) error {
	return fmt.Errorf("sqlitestore: open %s: %w", path, explain(path, err))
}
