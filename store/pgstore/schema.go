package pgstore

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ncore-io/event/store"
)

// SchemaVersion is the version of the database schema that this package
// creates and reads.
const SchemaVersion = 6

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrate brings the schema to SchemaVersion, realigns the log's order with
// the cluster's transaction IDs (see realign), and sets the store's ID
// (its cursor tag) and partition count. Everything runs in one transaction
// under an advisory lock keyed by the schema name, so concurrent processes
// migrate one after the other and the later ones find the work done.
func (s *Store) migrate(ctx context.Context) error { return s.migrateTo(ctx, SchemaVersion) }

// offsetVersion is the first schema version whose order has an offset
// (migration 4), which realign may raise.
const offsetVersion = 4

// migrateTo is migrate up to version target, as a build of that version
// would have migrated; it realigns only at offsetVersion and later.
func (s *Store) migrateTo(ctx context.Context, target int) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(s.opts.schema)); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+s.schema); err != nil {
		return fmt.Errorf("migrate: create schema %s: %w", s.schema, err)
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.schema+".meta (key text PRIMARY KEY, value text NOT NULL)"); err != nil {
		return fmt.Errorf("migrate: create meta table: %w", err)
	}
	current := 0
	var v string
	err = tx.QueryRow(ctx, "SELECT value FROM "+s.schema+".meta WHERE key = 'schema_version'").Scan(&v)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("migrate: read schema version: %w", err)
	default:
		if current, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("migrate: schema %s has a malformed version %q", s.schema, v)
		}
	}
	if current > SchemaVersion {
		return fmt.Errorf("migrate: schema %s is at version %d, newer than version %d that this build of pgstore knows; upgrade github.com/ncore-io/event", s.schema, current, SchemaVersion)
	}
	parts := s.opts.partitions
	if parts == 0 {
		parts = store.DefaultPartitions
	}
	steps, err := migrations()
	if err != nil {
		return err
	}
	for _, m := range steps {
		if m.version <= current || m.version > target {
			continue
		}
		sql := strings.NewReplacer("{{schema}}", s.schema, "{{channel}}", quoteLiteral(s.channel), "{{partitions}}", strconv.Itoa(parts)).Replace(m.sql)
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("migrate: schema %s to version %d (%s): %w", s.schema, m.version, m.name, err)
		}
		current = m.version
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+s.schema+".meta (key, value) VALUES ('schema_version', $1), ('store_id', $2) ON CONFLICT (key) DO UPDATE SET value = CASE WHEN excluded.key = 'schema_version' THEN excluded.value ELSE meta.value END",
		strconv.Itoa(current), randomID()); err != nil {
		return fmt.Errorf("migrate: record version: %w", err)
	}
	var id, stored string
	if err := tx.QueryRow(ctx, "SELECT (SELECT value FROM "+s.schema+".meta WHERE key = 'store_id'), (SELECT value FROM "+s.schema+".meta WHERE key = 'partitions')").Scan(&id, &stored); err != nil {
		return fmt.Errorf("migrate: read store ID: %w", err)
	}
	n, err := strconv.Atoi(stored)
	if err != nil || store.ValidatePartitions(n) != nil {
		return fmt.Errorf("migrate: schema %s has a malformed partition count %q", s.schema, stored)
	}
	if s.opts.partitions != 0 && s.opts.partitions != n {
		return fmt.Errorf("schema %s: the log has %d partitions, fixed when it was created; WithPartitions(%d) cannot change it", s.schema, n, s.opts.partitions)
	}
	s.partitions = n
	h := fnv.New64a()
	h.Write([]byte(id))
	s.tag = h.Sum64()
	if current >= offsetVersion {
		if err := s.realign(ctx, tx); err != nil {
			return fmt.Errorf("migrate: schema %s: %w", s.schema, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

type migration struct {
	version int
	name    string
	sql     string
}

// migrations lists the embedded migrations, named NNN_what.sql, in order.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migrate: migration file %s is not named NNN_name.sql", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// lockKey derives the advisory lock for migrating one schema, or, with a
// suffix, another lock of the schema.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("github.com/ncore-io/event/store/pgstore\x00" + schema))
	return int64(h.Sum64())
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
