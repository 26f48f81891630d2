// Command cqrs shows command–query responsibility segregation on a durable
// event log. Commands change the write model (a users table) and publish
// their event in the same SQLite transaction, through the outbox
// (Bus.PublishTx). A projection, a durable subscription, applies the
// events to a read model in a database of its own: an FTS5 full-text index
// that queries search. Since the read model is made from the events alone,
// it can be dropped and rebuilt from the log (event.Replay), and the
// rebuilt one is identical to the one the projection kept.
//
//	go run ./examples/cqrs
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ncore-io/event/store/sqlitestore"
)

func main() {
	dir := flag.String("dir", filepath.Join("data", "cqrs"), "`directory` for events.db (the event log and the write model) and read.db (the read model); created if missing")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "cqrs:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, dir string) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	events, err := sqlitestore.Open(ctx, filepath.Join(dir, "events.db"))
	if err != nil {
		return err
	}
	defer events.Close()
	svc, err := Open(ctx, events, filepath.Join(dir, "read.db"))
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err = errors.Join(err, svc.Close(cctx))
	}()
	// The projection runs on its own, so every wait for it has a deadline.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	create := func(name, email string) error {
		u, err := svc.CreateUser(ctx, name, email)
		if errors.Is(err, ErrEmailTaken) {
			// An earlier run on the same files created the user.
			fmt.Fprintf(out, "create %s: %s is already registered\n", name, email)
			return nil
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "created %s: %s <%s>\n", u.ID, u.Name, u.Email)
		// Read your own writes: wait for the projection to apply the event.
		return svc.WaitFor(wctx, u.ID, u.Version)
	}
	rename := func(email, name string) error {
		// The query side finds the user; the command side renames it.
		found, err := svc.Search(ctx, email)
		if err != nil {
			return err
		}
		if len(found) == 0 {
			return fmt.Errorf("no user found by %s", email)
		}
		if found[0].Name == name {
			fmt.Fprintf(out, "rename %s: already named %s\n", found[0].UserID, name)
			return nil
		}
		u, err := svc.RenameUser(ctx, found[0].UserID, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "renamed %s to %s (version %d)\n", u.ID, u.Name, u.Version)
		return svc.WaitFor(wctx, u.ID, u.Version)
	}
	search := func(query string) error {
		found, err := svc.Search(ctx, query)
		if err != nil {
			return err
		}
		var names []string
		for _, u := range found {
			names = append(names, fmt.Sprintf("%s %s <%s>", u.UserID, u.Name, u.Email))
		}
		fmt.Fprintf(out, "search %q: %d found: %s\n", query, len(found), strings.Join(names, "; "))
		return nil
	}
	rebuild := func() error {
		live, err := svc.Dump(ctx)
		if err != nil {
			return err
		}
		n, err := svc.Rebuild(ctx)
		if err != nil {
			return err
		}
		rebuilt, err := svc.Dump(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "rebuilt the read model from %d events: sha256 %x live, %x rebuilt: identical %v\n",
			n, sha256.Sum256(live), sha256.Sum256(rebuilt), bytes.Equal(live, rebuilt))
		return nil
	}

	for _, step := range []func() error{
		func() error { return create("Ada Lovelace", "ada@example.com") },
		func() error { return create("Grace Hopper", "grace@example.com") },
		func() error { return create("Alan Turing", "alan@example.org") },
		func() error { return search("grace") },
		func() error { return search("example.com") },
		func() error { return rename("grace@example.com", "Grace Brewster Hopper") },
		func() error { return search("brewster") },
		rebuild,
		func() error { return search("hop") },
		// More events after the rebuild: the projection goes on from where
		// the rebuilt read model ends.
		func() error { return create("Barbara Liskov", "barbara@example.org") },
		func() error { return rename("alan@example.org", "Alan Mathison Turing") },
		func() error { return search("example.org") },
		rebuild,
	} {
		if err := step(); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "event log and write model in %s, read model in %s\n", filepath.Join(dir, "events.db"), filepath.Join(dir, "read.db"))
	return nil
}
