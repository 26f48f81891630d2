// Package pgserver starts a throwaway PostgreSQL server for the
// benchmarks: initdb in a temporary directory, then the postmaster as a
// child process, listening on 127.0.0.1 on a free port, with fsync and
// synchronous_commit on so that durable benchmarks pay for real commits.
//
// The library's own test helper lives in an internal package of the
// library module, which this module cannot import; this is the same idea,
// kept small. As root it runs initdb and postgres as the "postgres" OS
// user, since PostgreSQL refuses to run as root.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrUnavailable marks a machine without a PostgreSQL installation (or
// without a user to run it as), where callers skip rather than fail.
var ErrUnavailable = errors.New("PostgreSQL not available")

// Server is a running throwaway server. It is not safe for concurrent use:
// start and stop it from one goroutine.
type Server struct {
	// DSN is the admin connection string (user postgres, database
	// postgres).
	DSN string

	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
}

// Start runs initdb and starts the server, waiting until it accepts
// connections or ctx ends.
func Start(ctx context.Context) (_ *Server, err error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	who, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "eventbench-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if who != nil {
		if err := os.Chown(dir, who.uid, who.gid); err != nil {
			return nil, fmt.Errorf("pgserver: chown %s: %w", dir, err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = procAttr(who, false)
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgserver: initdb: %w\n%s", err, out)
	}
	var lastErr error
	for range 3 { // a free port can be taken before the server binds it
		s, err := launch(ctx, bin, dir, who)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func launch(ctx context.Context, bin, dir string, who *osUser) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return nil, fmt.Errorf("pgserver: %w", err)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", filepath.Join(dir, "data"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+strconv.Itoa(port),
		"-c", "unix_socket_directories="+dir,
		"-c", "fsync=on",
		"-c", "synchronous_commit=on",
		"-c", "max_connections=200",
		"-c", "shared_buffers=128MB",
		"-c", "max_wal_size=1GB",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr(who, true)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("pgserver: start postgres: %w", err)
	}
	s := &Server{
		DSN:    fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		dir:    dir,
		cmd:    cmd,
		exited: make(chan struct{}),
		log:    logf,
	}
	go func() {
		cmd.Wait()
		close(s.exited)
	}()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, s.DSN)
		ccancel()
		if err == nil {
			conn.Close(ctx)
			return s, nil
		}
		select {
		case <-s.exited:
			logf.Close()
			b, _ := os.ReadFile(logf.Name())
			return nil, fmt.Errorf("pgserver: postgres exited: %v\n%s", cmd.ProcessState, b)
		case <-ctx.Done():
			s.halt()
			return nil, fmt.Errorf("pgserver: postgres not ready: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop shuts the server down (fast shutdown) and removes its directory.
func (s *Server) Stop() error {
	err := s.halt()
	if rmErr := os.RemoveAll(s.dir); err == nil {
		err = rmErr
	}
	return err
}

func (s *Server) halt() error {
	defer s.log.Close()
	if err := s.cmd.Process.Signal(os.Interrupt); err == nil {
		select {
		case <-s.exited:
			return nil
		case <-time.After(30 * time.Second):
		}
	}
	s.cmd.Process.Kill()
	<-s.exited
	return errors.New("pgserver: postgres did not stop within 30s of SIGINT; killed")
}

// findBin finds the directory of initdb and postgres: PATH first, then
// where Debian and others install them off PATH, newest version first.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: initdb is neither on PATH nor in /usr/lib/postgresql/*/bin (install postgresql, or set EVENT_BENCH_PG_DSN)", ErrUnavailable)
}

// major is the version number in a path like /usr/lib/postgresql/15/bin,
// so that 15 sorts above 9.
func major(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

type osUser struct{ uid, gid int }

// runAs returns the user to run PostgreSQL as: nil (ourselves) unless we
// are root.
func runAs() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("%w: running as root, which PostgreSQL refuses, and there is no postgres user: %v", ErrUnavailable, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgserver: user postgres has uid %q gid %q", u.Uid, u.Gid)
	}
	return &osUser{uid, gid}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
