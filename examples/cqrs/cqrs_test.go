package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// setup opens a service on new files in dir, or in a new directory.
func setup(t *testing.T, dir string) *Service {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	// A short watch interval: the projection notices commits sooner.
	events, err := sqlitestore.Open(context.Background(), filepath.Join(dir, "events.db"), sqlitestore.WithPollInterval(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { events.Close() })
	svc, err := Open(context.Background(), events, filepath.Join(dir, "read.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := svc.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return svc
}

func create(t *testing.T, svc *Service, name, email string) User {
	t.Helper()
	u, err := svc.CreateUser(context.Background(), name, email)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func rename(t *testing.T, svc *Service, id, name string) User {
	t.Helper()
	u, err := svc.RenameUser(context.Background(), id, name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// caughtUp waits until the read model shows u as it is now.
func caughtUp(t *testing.T, svc *Service, u User) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := svc.WaitFor(ctx, u.ID, u.Version); err != nil {
		t.Fatal(err)
	}
}

func dump(t *testing.T, svc *Service) string {
	t.Helper()
	d, err := svc.Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return string(d)
}

// rebuild rebuilds the read model and checks that it is identical to the
// one the projection kept, and that its full-text index agrees with its
// content. It returns the dump.
func rebuild(t *testing.T, svc *Service, wantEvents int) string {
	t.Helper()
	live := dump(t, svc)
	n, err := svc.Rebuild(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != wantEvents {
		t.Errorf("rebuilt from %d events, want %d", n, wantEvents)
	}
	rebuilt := dump(t, svc)
	if rebuilt != live {
		t.Fatalf("the rebuilt read model differs from the projection's:\nprojection:\n%s\nrebuilt:\n%s", live, rebuilt)
	}
	checkIndex(t, svc)
	return rebuilt
}

// checkIndex runs FTS5's integrity check: the index matches the rows.
func checkIndex(t *testing.T, svc *Service) {
	t.Helper()
	if _, err := svc.read.db.ExecContext(context.Background(), `INSERT INTO user_search (user_search) VALUES ('integrity-check')`); err != nil {
		t.Errorf("full-text index: %v", err)
	}
}

func TestProjectionAndSearch(t *testing.T) {
	t.Parallel()
	svc := setup(t, "")
	ada := create(t, svc, "Ada Lovelace", "ada@example.com")
	grace := create(t, svc, "Grace Hopper", "grace@example.com")
	alan := create(t, svc, "Alan Turing", "alan@example.org")
	jose := create(t, svc, "José Núñez", "jose@example.net")
	ada = rename(t, svc, ada.ID, "Ada King")
	if ada.Version != 2 {
		t.Errorf("renamed user at version %d, want 2", ada.Version)
	}
	caughtUp(t, svc, ada) // and so every event before

	for _, c := range []struct {
		query string
		want  []string
	}{
		{"grace", []string{grace.ID}},
		{"GRACE", []string{grace.ID}},
		{"hop", []string{grace.ID}}, // words match by prefix
		{"grace hopper", []string{grace.ID}},
		{"grace turing", nil}, // every word must match
		{"example.org", []string{alan.ID}},
		{"alan@example.org", []string{alan.ID}},
		{"jose nunez", []string{jose.ID}}, // diacritics do not matter
		{"king", []string{ada.ID}},        // the new name
		{"lovelace", nil},                 // not the old one
		{`ada" OR "grace`, []string{}},    // no FTS5 syntax from the query: three words, ANDed
		{"NEAR(ada grace)", nil},
	} {
		found, err := svc.Search(context.Background(), c.query)
		if err != nil {
			t.Errorf("search %q: %v", c.query, err)
			continue
		}
		var ids []string
		for _, u := range found {
			ids = append(ids, u.UserID)
		}
		if !slices.Equal(ids, c.want) && !(len(ids) == 0 && len(c.want) == 0) {
			t.Errorf("search %q found %v, want %v", c.query, ids, c.want)
		}
	}

	found, err := svc.Search(context.Background(), "king")
	if err != nil || len(found) != 1 {
		t.Fatalf("search king: %v, %v", found, err)
	}
	if got := found[0]; got.Name != "Ada King" || got.Email != "ada@example.com" || got.Version != 2 || got.Joined.IsZero() {
		t.Errorf("search king found %+v", got)
	}
	// Results are ranked: the user whose name has the word comes before the
	// ones whose email has it.
	create(t, svc, "Sam Example", "sam@elsewhere.net")
	caughtUp(t, svc, create(t, svc, "Zed", "zed@elsewhere.net"))
	if found, _ := svc.Search(context.Background(), "example"); len(found) != 5 || found[0].Name != "Sam Example" {
		t.Errorf("search example: %+v, want Sam Example first of 5", found)
	}

	if _, err := svc.Search(context.Background(), " !? "); err == nil || !strings.Contains(err.Error(), "no words to search for") {
		t.Errorf("search with no words: %v", err)
	}
}

func TestRebuildIsIdentical(t *testing.T) {
	t.Parallel()
	svc := setup(t, "")
	ada := create(t, svc, "Ada Lovelace", "ada@example.com")
	create(t, svc, "Grace Hopper", "grace@example.com")
	ada = rename(t, svc, ada.ID, "Ada King")
	caughtUp(t, svc, ada)
	first := rebuild(t, svc, 3)
	for _, want := range []string{"-- user_view\n[1,\"user-1\",\"Ada King\",\"ada@example.com\",2,", "-- user_search\n[1,\"Ada King\",\"ada@example.com\"]\n[2,", "-- projection\n[3]\n"} {
		if !strings.Contains(first, want) {
			t.Errorf("dump lacks %q:\n%s", want, first)
		}
	}

	// More events after the rebuild: the projection goes on from it.
	alan := create(t, svc, "Alan Turing", "alan@example.org")
	alan = rename(t, svc, alan.ID, "Alan Mathison Turing")
	ada = rename(t, svc, ada.ID, "Augusta Ada King")
	caughtUp(t, svc, ada)
	second := rebuild(t, svc, 6)
	if second == first {
		t.Error("the read model did not change after more events")
	}
	if !strings.Contains(second, `"Alan Mathison Turing"`) {
		t.Errorf("dump lacks the renamed user:\n%s", second)
	}
}

// The read model may be deleted: the next start builds it from the log,
// and the projection goes on from there although its checkpoint is past
// the events that built it.
func TestReadModelBuiltWhenMissing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var want string
	func() {
		// Closed at the end of this function, not of the test.
		events, err := sqlitestore.Open(context.Background(), filepath.Join(dir, "events.db"), sqlitestore.WithPollInterval(5*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer events.Close()
		svc, err := Open(context.Background(), events, filepath.Join(dir, "read.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close(context.Background())
		ada := create(t, svc, "Ada Lovelace", "ada@example.com")
		caughtUp(t, svc, rename(t, svc, ada.ID, "Ada King"))
		want = dump(t, svc)
	}()
	for _, f := range []string{"read.db", "read.db-wal", "read.db-shm"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}

	svc := setup(t, dir)
	if got := dump(t, svc); got != want {
		t.Fatalf("read model built at start:\n%s\nwant:\n%s", got, want)
	}
	grace := create(t, svc, "Grace Hopper", "grace@example.com")
	caughtUp(t, svc, grace)
	if found, err := svc.Search(context.Background(), "grace"); err != nil || len(found) != 1 {
		t.Errorf("search grace after the restart: %v, %v", found, err)
	}
	rebuild(t, svc, 3)
}

// Delivery is at least once: an event the read model has is not applied
// again.
func TestProjectionSkipsWhatItHas(t *testing.T) {
	t.Parallel()
	svc := setup(t, "")
	ada := create(t, svc, "Ada Lovelace", "ada@example.com")
	caughtUp(t, svc, rename(t, svc, ada.ID, "Ada King"))
	want := dump(t, svc)
	n, err := event.Replay(context.Background(), svc.bus, store.Query{}, svc.read.Project)
	if err != nil || n != 2 {
		t.Fatalf("redelivered %d events: %v", n, err)
	}
	if got := dump(t, svc); got != want {
		t.Errorf("read model after redelivery:\n%s\nwant:\n%s", got, want)
	}
}

// Commands keep coming while the read model is rebuilt, several times: no
// event is lost or applied twice.
func TestRebuildWhileWriting(t *testing.T) {
	t.Parallel()
	svc := setup(t, "")
	const users = 20
	var wg sync.WaitGroup
	var last User
	wg.Go(func() {
		for i := range users {
			u, err := svc.CreateUser(context.Background(), fmt.Sprintf("User %d", i), fmt.Sprintf("u%d@example.com", i))
			if err != nil {
				t.Error(err)
				return
			}
			last = u
		}
	})
	for range 5 {
		if _, err := svc.Rebuild(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	caughtUp(t, svc, last)
	if found, err := svc.Search(context.Background(), "user"); err != nil || len(found) != users {
		t.Errorf("search found %d users (%v), want %d", len(found), err, users)
	}
	rebuild(t, svc, users)
}

func TestCommandsRejectBadInput(t *testing.T) {
	t.Parallel()
	svc := setup(t, "")
	ada := create(t, svc, "Ada Lovelace", "ada@example.com")
	for _, c := range []struct {
		name, email, wantErr string
	}{
		{"", "grace@example.com", "empty name"},
		{"   ", "grace@example.com", "empty name"},
		{strings.Repeat("x", 101), "grace@example.com", "name has 101 characters, more than 100"},
		{"Grace", "grace", `"grace" is not a bare email address`},
		{"Grace", "Grace <grace@example.com>", "is not a bare email address"},
		{"Ada again", "ada@example.com", "ada@example.com is registered to user-1"},
	} {
		_, err := svc.CreateUser(context.Background(), c.name, c.email)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("create %q %q: %v, want an error containing %q", c.name, c.email, err, c.wantErr)
		}
	}
	if _, err := svc.CreateUser(context.Background(), "Ada again", "ada@example.com"); !errors.Is(err, ErrEmailTaken) {
		t.Errorf("create with a taken email: %v, want ErrEmailTaken", err)
	}
	if _, err := svc.RenameUser(context.Background(), "user-9", "Nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rename an unknown user: %v, want ErrNotFound", err)
	}
	if _, err := svc.RenameUser(context.Background(), ada.ID, ""); err == nil || !strings.Contains(err.Error(), "empty name") {
		t.Errorf("rename to an empty name: %v", err)
	}
	if u := rename(t, svc, ada.ID, "Ada Lovelace"); u.Version != 1 {
		t.Errorf("rename to the same name moved the version to %d", u.Version)
	}

	// Nothing was stored but the first user and its event.
	var rows int
	if err := svc.db.QueryRow(`SELECT count(*) FROM users`).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("%d users in the write model (%v), want 1", rows, err)
	}
	n, err := event.Replay(context.Background(), svc.bus, store.Query{}, func(context.Context, event.Event[any]) error { return nil })
	if err != nil || n != 1 {
		t.Errorf("%d events in the log (%v), want 1", n, err)
	}
}

// The program itself, run twice on the same files.
func TestRun(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	for i := range 2 {
		var out bytes.Buffer
		if err := run(context.Background(), &out, dir); err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(out.String(), "identical true"); got != 2 || strings.Contains(out.String(), "identical false") {
			t.Errorf("run %d: %d identical rebuilds, want 2:\n%s", i+1, got, out.String())
		}
		for _, want := range []string{
			`search "brewster": 1 found: user-2 Grace Brewster Hopper <grace@example.com>`,
			`search "example.org": 2 found:`,
		} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("run %d: output lacks %q:\n%s", i+1, want, out.String())
			}
		}
		if i == 1 && !strings.Contains(out.String(), "ada@example.com is already registered") {
			t.Errorf("run 2 did not find the first run's users:\n%s", out.String())
		}
	}
}
