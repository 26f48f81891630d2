package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a PostgreSQL server of one test's own, for tests that do to a
// server what would disturb others sharing it: crash and restart it, or
// restore a dump into a cluster that is new. It is not safe for concurrent
// use, except DSN and Bin.
type Server struct {
	tb  testing.TB
	srv *server
}

// NewServer starts a server that belongs to tb alone, in a new cluster
// made by initdb, and stops it and removes its directory when tb ends. It
// skips or fails tb as [DSN] does when PostgreSQL is not installed; it
// does not use EnvDSN, since it needs to run the server itself.
func NewServer(tb testing.TB) *Server {
	tb.Helper()
	s, err := start()
	if err != nil {
		if errors.Is(err, errUnavailable) && os.Getenv("CI") != "true" {
			tb.Skipf("pgtest: %v", err)
		}
		tb.Fatalf("pgtest: %v", err)
	}
	srv := &Server{tb: tb, srv: s}
	tb.Cleanup(func() {
		if err := srv.srv.stop(); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return srv
}

// DSN returns the connection string of a new, empty database on s, which
// stays valid across [Server.Restart].
func (s *Server) DSN() string {
	s.tb.Helper()
	name := "evt_" + randHex(8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := adminExec(ctx, s.srv.dsn, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		s.tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	dsn, err := withDatabase(s.srv.dsn, name)
	if err != nil {
		s.tb.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// Bin returns the directory of the server's programs (pg_dump, psql, ...).
func (s *Server) Bin() string { return s.srv.bin }

// Command returns a command that runs the PostgreSQL program name (such
// as "pg_dump") from [Server.Bin] with args, as the user the server runs
// as.
func (s *Server) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.srv.bin, name), args...)
	cmd.SysProcAttr = procAttr(s.srv.who, false)
	return cmd
}

// Restart stops the server as `pg_ctl restart -m immediate` does, with
// SIGQUIT: every connection is cut and nothing is flushed, as in a crash,
// and the next start recovers from the WAL. It then starts the server
// again on the same port and waits until it accepts connections. down,
// if not nil, runs while the server is stopped.
func (s *Server) Restart(ctx context.Context, down func()) error {
	old := s.srv
	if err := old.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		return fmt.Errorf("restart server: %w", err)
	}
	select {
	case <-old.exited:
	case <-ctx.Done():
		return fmt.Errorf("restart server: waiting for it to stop: %w", ctx.Err())
	}
	old.logf.Close()
	if down != nil {
		down()
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	// The port was free a moment ago; another process may take it
	// meanwhile, which fails the restart rather than move the server.
	srv, err := launch(ctx, old.bin, old.dir, old.who, old.port)
	if err != nil {
		return fmt.Errorf("restart server: %w", err)
	}
	s.srv = srv
	return nil
}
