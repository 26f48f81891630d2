// Package pgtest gives tests a fresh PostgreSQL database each.
//
// When the environment variable EVENT_TEST_PG_DSN names a server, every
// [DSN] call creates a new database on it (the role needs CREATEDB) and drops
// it when the test ends. Otherwise the first call starts one throwaway server
// for the whole test binary: initdb and postgres from PATH or from
// /usr/lib/postgresql/*/bin, in a temporary directory, listening on
// 127.0.0.1 on a free port with its Unix socket in that directory, run as the
// "postgres" OS user when the tests run as root (PostgreSQL refuses root).
// The server keeps fsync and synchronous_commit on, so benchmarks measure
// durable commits.
//
// A package that uses it wraps its test main so the server is stopped and
// its directory removed after the tests:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }
//
// Without PostgreSQL, tests that call [DSN] are skipped with a message saying
// what is missing, except when the environment variable CI is "true": there
// they fail, so a CI job cannot pass by skipping every database test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable that points the tests at an existing
// server instead of a throwaway one.
const EnvDSN = "EVENT_TEST_PG_DSN"

// startTimeout bounds initdb plus server start; initdb alone takes a second
// or two on a slow machine.
const startTimeout = 60 * time.Second

var (
	mu     sync.Mutex
	srv    *server // the throwaway server, once started
	srvErr error   // why it could not start; sticky, so every test reports it
	tried  bool
)

// errUnavailable marks a missing PostgreSQL installation, which skips tests
// rather than failing them (outside CI).
var errUnavailable = errors.New("PostgreSQL not available")

// DSN returns the connection string of a new, empty database that belongs to
// tb alone, and drops the database when tb ends (after cleanups registered
// later, such as closing a pool). It is safe for concurrent use by parallel
// tests.
func DSN(tb testing.TB) string {
	tb.Helper()
	base, err := baseDSN()
	if err != nil {
		if errors.Is(err, errUnavailable) && os.Getenv("CI") != "true" {
			tb.Skipf("pgtest: %v", err)
		}
		tb.Fatalf("pgtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := "evt_" + randHex(8)
	if err := adminExec(ctx, base, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE ends connections a test forgot to close instead of failing
		// the drop; the leak check reports the forgotten pool anyway.
		if err := adminExec(ctx, base, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	dsn, err := withDatabase(base, name)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// Wrap returns m with a Run that, after running the tests, stops the server
// that [DSN] started, if any, and removes its directory. Pass it to
// goleak.VerifyTestMain (or call Run and then os.Exit).
func Wrap(m interface{ Run() int }) interface{ Run() int } {
	return wrapped{m}
}

type wrapped struct{ m interface{ Run() int } }

func (w wrapped) Run() int {
	code := w.m.Run()
	if err := Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Stop stops the throwaway server, if one was started, and removes its
// directory. [Wrap] calls it; call it yourself only from a TestMain that
// does not use Wrap. It is safe for concurrent use; DSN fails after it.
func Stop() error {
	mu.Lock()
	defer mu.Unlock()
	tried = true
	if srvErr == nil {
		srvErr = errors.New("server already stopped")
	}
	if srv == nil {
		return nil
	}
	s := srv
	srv = nil
	return s.stop()
}

func baseDSN() (string, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn, nil
	}
	mu.Lock()
	defer mu.Unlock()
	if !tried {
		tried = true
		srv, srvErr = start()
	}
	if srvErr != nil {
		return "", srvErr
	}
	return srv.dsn, nil
}

func adminExec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase points dsn, in URL or keyword/value form, at database name.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", EnvDSN, err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	// In keyword/value form a later keyword overrides an earlier one.
	return dsn + " dbname=" + name, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// server is a PostgreSQL postmaster run as a child of the test binary.
type server struct {
	bin    string  // directory of initdb, postgres, pg_dump, ...
	who    *osUser // runs it, when not this process's user
	port   int
	dir    string // temporary directory: data/, the socket, postgres.log
	dsn    string // admin DSN (database "postgres")
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	logf   *os.File
}

// start runs initdb and postgres. It runs the postmaster directly instead of
// through pg_ctl so that it is our child: with Pdeathsig the kernel stops it
// even when the test binary dies without running Stop (a -timeout panic, a
// kill), where a pg_ctl-daemonised server would live on.
func start() (_ *server, err error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	who, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	if who != nil {
		if err := os.Chown(dir, who.uid, who.gid); err != nil {
			return nil, fmt.Errorf("start server: chown %s to the postgres user: %w", dir, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()

	data := filepath.Join(dir, "data")
	// --no-sync only skips initdb's final flush of the new cluster, which a
	// throwaway directory does not need; the server itself runs with fsync on.
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = procAttr(who, false)
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("start server: initdb: %w\n%s", err, out)
	}

	// A port picked by the kernel can be taken by someone else before the
	// server binds it; try a few.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, fmt.Errorf("start server: %w", err)
		}
		s, err := launch(ctx, bin, dir, who, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// launch runs postgres on the cluster in dir, listening on port.
func launch(ctx context.Context, bin, dir string, who *osUser, port int) (*server, error) {
	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"),
		"-D", filepath.Join(dir, "data"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(port),
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "max_connections=300",
		"-c", "shared_buffers=128MB",
		// Parallel tests each create a database; spreading checkpoints
		// keeps that from stalling on one.
		"-c", "max_wal_size=1GB",
	)
	// An *os.File as output needs no copying goroutine.
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr(who, true)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start server: %w", err)
	}
	s := &server{
		bin:    bin,
		who:    who,
		port:   port,
		dir:    dir,
		dsn:    fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		cmd:    cmd,
		exited: make(chan struct{}),
		logf:   logf,
	}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		_ = s.halt()
		return nil, fmt.Errorf("start server: %w\nserver log %s:\n%s", err, logPath, tail(logPath))
	}
	return s, nil
}

// waitReady polls until the server accepts a connection, it exits, or ctx
// ends.
func (s *server) waitReady(ctx context.Context) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, s.dsn)
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited: %v", s.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// halt fast-shuts the server down (SIGINT: roll back open transactions,
// checkpoint, exit) and waits for it, escalating to SIGKILL.
func (s *server) halt() error {
	defer s.logf.Close()
	if err := s.cmd.Process.Signal(os.Interrupt); err == nil {
		select {
		case <-s.exited:
			return nil
		case <-time.After(30 * time.Second):
		}
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	return fmt.Errorf("postgres did not stop within 30s of SIGINT; killed")
}

func (s *server) stop() error {
	err := s.halt()
	if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
		err = rmErr
	}
	if err != nil {
		return fmt.Errorf("stop server: %w", err)
	}
	return nil
}

// findBin returns the directory that holds initdb and postgres: PATH first,
// then the places distributions install them off PATH, newest version first.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	var dirs []string
	for _, g := range []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin", "/usr/local/opt/postgresql*/bin"} {
		m, _ := filepath.Glob(g)
		sort.Slice(m, func(i, j int) bool { return versionOf(m[i]) > versionOf(m[j]) })
		dirs = append(dirs, m...)
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: initdb not found on PATH nor in /usr/lib/postgresql/*/bin; install PostgreSQL (e.g. apt-get install postgresql) or set %s", errUnavailable, EnvDSN)
}

// versionOf extracts the major version from a path like
// /usr/lib/postgresql/15/bin, so that 15 sorts above 9.
func versionOf(p string) int {
	for _, part := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '-' }) {
		if n, err := strconv.Atoi(strings.SplitN(part, ".", 2)[0]); err == nil {
			return n
		}
	}
	return 0
}

// osUser is the OS user to run PostgreSQL as, when not the current one.
type osUser struct{ uid, gid int }

// runAs returns who to run the server as: nil (ourselves) when not root,
// the "postgres" user when root.
func runAs() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root, which PostgreSQL refuses, and there is no \"postgres\" user to run it as: %v", errUnavailable, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("start server: user postgres has non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	return &osUser{uid: uid, gid: gid}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last part of a log file, enough to see why a start
// failed.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const max = 8 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
