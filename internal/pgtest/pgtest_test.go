package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/ncore-io/event/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }

// TestDSNIsolated checks that each DSN names its own empty database on a
// server with durable settings.
func TestDSNIsolated(t *testing.T) {
	ctx := context.Background()
	a, b := pgtest.DSN(t), pgtest.DSN(t)
	if a == b {
		t.Fatalf("two DSN calls returned the same DSN %q", a)
	}
	ca, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close(ctx)
	cb, err := pgx.Connect(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close(ctx)

	if _, err := ca.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := cb.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("table created through one DSN is visible through the other")
	}
	if os.Getenv(pgtest.EnvDSN) == "" {
		for _, setting := range []string{"fsync", "synchronous_commit"} {
			var v string
			if err := ca.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v != "on" {
				t.Errorf("%s = %q, want on", setting, v)
			}
		}
	}
}

// TestDropOnCleanup checks that a test's database is gone after the test,
// even with a connection left open.
func TestDropOnCleanup(t *testing.T) {
	ctx := context.Background()
	var name string
	var leftOpen *pgx.Conn
	t.Run("inner", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, pgtest.DSN(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
			t.Fatal(err)
		}
		leftOpen = conn
	})
	if leftOpen != nil {
		defer leftOpen.Close(ctx)
	}
	if t.Failed() {
		return
	}
	admin, err := pgx.Connect(ctx, pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

// TestServerRestart checks that a test's own server comes back on the
// same DSN after a crash-like restart, with what was committed before it,
// and that connections of before are cut.
func TestServerRestart(t *testing.T) {
	ctx := t.Context()
	srv := pgtest.NewServer(t)
	dsn := srv.DSN()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int); INSERT INTO t VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	downRan := false
	if err := srv.Restart(ctx, func() { downRan = true }); err != nil {
		t.Fatal(err)
	}
	if !downRan {
		t.Error("Restart did not run down while the server was stopped")
	}
	if err := conn.Ping(ctx); err == nil {
		t.Error("a connection from before the restart still works")
	}
	again, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	defer again.Close(ctx)
	var x int
	if err := again.QueryRow(ctx, "SELECT x FROM t").Scan(&x); err != nil || x != 42 {
		t.Fatalf("after restart: x = %d, %v; want 42", x, err)
	}
}
