// Package datatest opens the service's database for tests: an SQLite file
// in the test's temporary directory, or a new PostgreSQL database from
// internal/pgtest (a package using it wraps its TestMain with pgtest.Wrap).
package datatest

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ncore-io/event/examples/userfanout/data"
	"github.com/ncore-io/event/internal/pgtest"
)

// Drivers are the drivers to run a test on.
var Drivers = []string{data.SQLite, data.Postgres}

// Options returns the options of a new, empty database of the driver, which
// lasts until tb ends. Without PostgreSQL, a test asking for it is skipped
// (except in CI; see pgtest).
func Options(tb testing.TB, driver string) data.Options {
	tb.Helper()
	opts := data.Options{Driver: driver}
	switch driver {
	case data.SQLite:
		opts.Path = filepath.Join(tb.TempDir(), "userfanout.db")
	case data.Postgres:
		opts.DSN = pgtest.DSN(tb)
	default:
		tb.Fatalf("datatest: unknown driver %q", driver)
	}
	return opts
}

// Open opens the database of opts, and closes it when tb ends.
func Open(tb testing.TB, opts data.Options) *data.DB {
	tb.Helper()
	db, err := data.Open(context.Background(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// SQLite opens a new SQLite database, closed when tb ends.
func SQLite(tb testing.TB) *data.DB {
	tb.Helper()
	return Open(tb, Options(tb, data.SQLite))
}
