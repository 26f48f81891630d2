package benchmarks_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/ncore-io/event/benchmarks/internal/pgserver"
)

// Every benchmark here names its implementation in the last element of its
// name ("ours" for this library), and the elements before it name the
// workload, so that cmd/benchtab can put each peer beside ours.

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(stopServer{m})
}

// stopServer stops the throwaway PostgreSQL server, if one was started,
// after the benchmarks and before the leak check.
type stopServer struct{ m *testing.M }

func (s stopServer) Run() int {
	code := s.m.Run()
	pgMu.Lock()
	defer pgMu.Unlock()
	if pgSrv != nil {
		if err := pgSrv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
		pgSrv = nil
	}
	pgErr = errors.New("server stopped")
	return code
}

var (
	pgMu    sync.Mutex
	pgSrv   *pgserver.Server
	pgErr   error
	pgTried bool
)

// pgBase returns the admin DSN: EVENT_BENCH_PG_DSN, or a throwaway server
// started on first use.
func pgBase() (string, error) {
	if dsn := os.Getenv("EVENT_BENCH_PG_DSN"); dsn != "" {
		return dsn, nil
	}
	pgMu.Lock()
	defer pgMu.Unlock()
	if !pgTried {
		pgTried = true
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		pgSrv, pgErr = pgserver.Start(ctx)
		cancel()
	}
	if pgErr != nil {
		return "", pgErr
	}
	return pgSrv.DSN, nil
}

// pgDSN returns the DSN of a new, empty database of b's own, dropped when
// b ends. Without PostgreSQL it skips b, except under CI=true, where a
// benchmark that cannot run fails.
func pgDSN(b *testing.B) string {
	b.Helper()
	base, err := pgBase()
	if err != nil {
		if errors.Is(err, pgserver.ErrUnavailable) && os.Getenv("CI") != "true" {
			b.Skipf("skipping: %v", err)
		}
		b.Fatal(err)
	}
	ctx := context.Background()
	name := "bench_" + randHex(6)
	if err := adminExec(ctx, base, "CREATE DATABASE "+name); err != nil {
		b.Fatalf("create database: %v", err)
	}
	b.Cleanup(func() {
		if err := adminExec(ctx, base, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			b.Errorf("drop database %s: %v", name, err)
		}
	})
	return withDatabase(b, base, name)
}

// withDatabase points dsn, a URL or keyword/value string, at database name.
func withDatabase(b *testing.B, dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			b.Fatalf("EVENT_BENCH_PG_DSN: %v", err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name // a later keyword overrides an earlier one
}

func adminExec(ctx context.Context, dsn, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// sqlitePath is a new SQLite database file of b's own.
func sqlitePath(b *testing.B) string {
	return filepath.Join(b.TempDir(), "events.db")
}

// envSize reads a size from the environment, def if unset.
func envSize(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// report records the rate of events: eventsPerOp events per b.N op.
func report(b *testing.B, eventsPerOp int) {
	b.ReportMetric(float64(b.N)*float64(eventsPerOp)/b.Elapsed().Seconds(), "events/s")
}

// tracker checks that every event 0..n-1 is handled exactly once, and lets
// a benchmark wait for the last. hit is safe for concurrent use.
type tracker struct {
	bits   []atomic.Uint32
	n      atomic.Int64
	dups   atomic.Int64
	bad    atomic.Int64
	misord atomic.Int64
	want   int64
	done   chan struct{}
	last   []atomic.Int64 // per key, the last index handled, +1; nil: order not checked
}

func newTracker(n int) *tracker {
	return &tracker{bits: make([]atomic.Uint32, (n+31)/32), want: int64(n), done: make(chan struct{})}
}

// ordered makes the tracker also check that events of key i%keys arrive
// in increasing order of i.
func (t *tracker) ordered(keys int) *tracker {
	t.last = make([]atomic.Int64, keys)
	return t
}

func (t *tracker) hit(i int) {
	if i < 0 || int64(i) >= t.want {
		t.bad.Add(1)
		return
	}
	bit := uint32(1) << (i & 31)
	if t.bits[i>>5].Or(bit)&bit != 0 {
		t.dups.Add(1)
	}
	if t.last != nil {
		if prev := t.last[i%len(t.last)].Swap(int64(i) + 1); prev > int64(i) {
			t.misord.Add(1)
		}
	}
	if t.n.Add(1) == t.want {
		close(t.done)
	}
}

// wait waits for the last event, failing b after timeout.
func (t *tracker) wait(b *testing.B, timeout time.Duration) {
	b.Helper()
	if t.want == 0 {
		return
	}
	select {
	case <-t.done:
	case <-time.After(timeout):
		b.Fatalf("handled %d of %d events within %v", t.n.Load(), t.want, timeout)
	}
}

// check fails b unless every event was handled exactly once (and in order
// per key, if asked). Call it once nothing more can arrive.
func (t *tracker) check(b *testing.B) {
	b.Helper()
	if n, d, bad, mis := t.n.Load(), t.dups.Load(), t.bad.Load(), t.misord.Load(); n != t.want || d != 0 || bad != 0 || mis != 0 {
		b.Fatalf("handled %d events, want %d: %d duplicates, %d unknown, %d out of order per key", n, t.want, d, bad, mis)
	}
}

// Registered is the durable benchmarks' payload: about 200 bytes of JSON.
// N numbers the events of a run.
type Registered struct {
	UserID    string    `json:"user_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Plan      string    `json:"plan"`
	Referrer  string    `json:"referrer"`
	Seats     int       `json:"seats"`
	N         int       `json:"n"`
	CreatedAt time.Time `json:"created_at"`
}

func registered(n int) Registered {
	return Registered{
		UserID:    "user-" + strconv.Itoa(n),
		Email:     "someone." + strconv.Itoa(n) + "@example.com",
		Name:      "Someone With A Long Name",
		Plan:      "enterprise-annual",
		Referrer:  "newsletter-2025-01",
		Seats:     25,
		N:         n,
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func registeredJSON(b *testing.B, n int) []byte {
	p, err := json.Marshal(registered(n))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func TestPayloadSize(t *testing.T) {
	p, err := json.Marshal(registered(12345))
	if err != nil {
		t.Fatal(err)
	}
	if len(p) < 180 || len(p) > 240 {
		t.Fatalf("payload is %d bytes, want about 200: %s", len(p), p)
	}
}
