package sqlitestore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func rec(id string) store.Record {
	return store.Record{ID: id, Topic: "test.created", Kind: store.KindDomain, Time: t0, ContentType: "application/json", Payload: []byte(`{"id":"` + id + `"}`)}
}

func recs(prefix string, n int) []store.Record {
	out := make([]store.Record, n)
	for i := range out {
		out[i] = rec(fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// rawDB opens path with database/sql directly, for setting up files.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustOpen(t *testing.T, path string, opts ...sqlitestore.Option) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(t.Context(), path, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestReopenPersists(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path)
	batch := recs("a", 5)
	for i := range batch {
		batch[i].AggregateID = "agg"
		batch[i].Time = t0.Add(time.Duration(i) * time.Hour)
	}
	if err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	page, _, err := s.Read(ctx, store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetCheckpoint(ctx, "c", page[3].Cursor); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDeadLetter(ctx, store.DeadLetterRecord{Subscription: "s", Record: page[0], Error: "boom", Attempts: 2, Time: t0}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteBefore(ctx, t0.Add(2*time.Hour)); err != nil || n != 2 {
		t.Fatalf("DeleteBefore = %d, %v; want 2", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = mustOpen(t, path)
	got, _, err := s.Read(ctx, store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != "a-2" {
		t.Fatalf("after reopening, Read gives %d records starting %v; want a-2, a-3, a-4", len(got), got)
	}
	if c, err := s.Checkpoint(ctx, "c"); err != nil || c != page[3].Cursor {
		t.Fatalf("checkpoint after reopening = %q, %v; want %q", c, err, page[3].Cursor)
	}
	if dl, err := s.DeadLetters(ctx, "s", 0); err != nil || len(dl) != 1 || dl[0].Error != "boom" {
		t.Fatalf("dead letters after reopening = %+v, %v", dl, err)
	}
	if _, _, err := s.Read(ctx, store.Query{After: page[0].Cursor}); !errors.Is(err, store.ErrCursorExpired) {
		t.Fatalf("Read after a deleted record's cursor, after reopening: %v, want ErrCursorExpired", err)
	}
	more := []store.Record{rec("b")}
	more[0].AggregateID = "agg"
	if err := s.Append(ctx, more, store.Expect{AggregateID: "agg", Version: 5}); err != nil {
		t.Fatalf("Append after reopening: %v", err)
	}
	if more[0].Version != 6 || more[0].Position <= page[4].Position {
		t.Fatalf("after reopening got version %d position %d; want 6 and a position after %d", more[0].Version, more[0].Position, page[4].Position)
	}
}

func TestOpenRefusesOtherFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()

	appDB := filepath.Join(dir, "app.db")
	db := rawDB(t, appDB)
	if _, err := db.Exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	otherApp := filepath.Join(dir, "other.db")
	db = rawDB(t, otherApp)
	if _, err := db.Exec(`CREATE TABLE event_meta (key TEXT PRIMARY KEY, value ANY); INSERT INTO event_meta VALUES ('application', 'someone else')`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("not a database at all\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}

	for path, want := range map[string]string{
		appDB:       "not an event database: it has tables ([users])",
		otherApp:    `not an event database: event_meta names application "someone else"`,
		text:        "not an SQLite database",
		"":          "empty path",
		":memory:":  "plain file path",
		"x?mode=ro": "contains '?'",
	} {
		s, err := sqlitestore.Open(t.Context(), path)
		if err == nil {
			s.Close()
			t.Errorf("Open(%s) succeeded, want an error mentioning %q", path, want)
			continue
		}
		if !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "sqlitestore: open") {
			t.Errorf("Open(%s) = %q, want an error mentioning %q", path, err, want)
		}
	}
	// The refused files are unchanged.
	if b, _ := os.ReadFile(text); !strings.HasPrefix(string(b), "not a database") {
		t.Error("Open changed a file that is not a database")
	}
	db = rawDB(t, appDB)
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name LIKE 'event%'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("Open created %d event tables in an application database (%v)", n, err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	if _, err := db.Exec(`UPDATE event_meta SET value = 99 WHERE key = 'schema_version'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err := sqlitestore.Open(t.Context(), path)
	want := fmt.Sprintf("schema version 99, newer than version %d", sqlitestore.SchemaVersion)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Open of a newer database = %v, want an error mentioning %q", err, want)
	}
}

func TestOpenOptionsValidated(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	for _, tt := range []struct {
		opt  sqlitestore.Option
		want string
	}{
		{sqlitestore.WithMaxPayloadSize(-1), "max payload size -1"},
		{sqlitestore.WithSynchronous(7), "synchronous mode 7"},
		{sqlitestore.WithBusyTimeout(-time.Second), "busy timeout -1s"},
		{sqlitestore.WithReadConns(0), "read pool size 0"},
		{sqlitestore.WithGroupCommit(0, 0), "max batch 0"},
		{sqlitestore.WithGroupCommit(10, -time.Millisecond), "max delay -1ms"},
	} {
		_, err := sqlitestore.Open(t.Context(), path, tt.opt)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open with a bad option = %v, want an error mentioning %q", err, tt.want)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open with bad options created the file (%v)", err)
	}
}

// TestConcurrentOpen opens one new file from several stores at once, as
// processes starting together would, and has them append concurrently.
func TestConcurrentOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	const n = 4
	stores := make([]*sqlitestore.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = sqlitestore.Open(t.Context(), path)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	for i, s := range stores {
		wg.Go(func() {
			for j := range 10 {
				r := rec(fmt.Sprintf("s%d-%d", i, j))
				r.AggregateID = "shared"
				if err := s.Append(t.Context(), []store.Record{r}); err != nil {
					t.Errorf("store %d: Append: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	got, err := stores[0].LoadAggregate(t.Context(), "shared", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n*10 {
		t.Fatalf("aggregate has %d records, want %d", len(got), n*10)
	}
	for i, r := range got {
		if r.Version != int64(i+1) || (i > 0 && r.Position <= got[i-1].Position) {
			t.Fatalf("record %d: version %d position %d; versions must be dense and positions increasing", i, r.Version, r.Position)
		}
	}
}

func pragma(t *testing.T, s *sqlitestore.Store, name string) string {
	t.Helper()
	var v string
	if err := s.DB().QueryRowContext(t.Context(), "PRAGMA "+name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSynchronousOption(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	full := mustOpen(t, filepath.Join(dir, "full.db"))
	normal := mustOpen(t, filepath.Join(dir, "normal.db"), sqlitestore.WithSynchronous(sqlitestore.SynchronousNormal))
	if got := pragma(t, full, "synchronous"); got != "2" {
		t.Errorf("default synchronous = %s, want 2 (FULL)", got)
	}
	if got := pragma(t, normal, "synchronous"); got != "1" {
		t.Errorf("WithSynchronous(SynchronousNormal): synchronous = %s, want 1 (NORMAL)", got)
	}
	if got := pragma(t, normal, "journal_mode"); got != "wal" {
		t.Errorf("journal_mode = %s, want wal", got)
	}
	if err := normal.Append(t.Context(), recs("n", 3)); err != nil {
		t.Fatal(err)
	}
	if got, _, err := normal.Read(t.Context(), store.Query{}); err != nil || len(got) != 3 {
		t.Fatalf("Read = %d, %v", len(got), err)
	}
}

// holdWriter begins a transaction on the store's writer, so that group
// commit waits, and returns a function that ends it.
func holdWriter(t *testing.T, s *sqlitestore.Store) func() {
	t.Helper()
	tx, err := s.DB().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return func() { tx.Rollback() }
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupCommitBatches queues many Appends behind a transaction that holds
// the writer; when it ends they must commit together.
func TestGroupCommitBatches(t *testing.T) {
	t.Parallel()
	s := open(t)
	release := holdWriter(t, s)
	before := sqlitestore.Commits(s)
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			batch := recs(fmt.Sprintf("g%d", i), 1+i%3)
			var expect []store.Expect
			if i%10 == 0 { // some fail, alone
				expect = []store.Expect{{AggregateID: "x", Version: 9}}
			}
			errs[i] = s.Append(t.Context(), batch, expect...)
		})
	}
	waitUntil(t, "appends to queue", func() bool { return sqlitestore.Queued(s) == n-1 })
	release()
	wg.Wait()
	for i, err := range errs {
		if i%10 == 0 && !errors.Is(err, store.ErrVersionConflict) {
			t.Errorf("append %d: %v, want a version conflict", i, err)
		}
		if i%10 != 0 && err != nil {
			t.Errorf("append %d: %v", i, err)
		}
	}
	if got := sqlitestore.Commits(s) - before; got != 1 {
		t.Fatalf("%d queued appends took %d transactions, want 1", n, got)
	}
	all, _, err := s.Read(t.Context(), store.Query{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := range n {
		if i%10 != 0 {
			want += 1 + i%3
		}
	}
	if len(all) != want {
		t.Fatalf("log holds %d records, want %d", len(all), want)
	}
}

// TestGroupCommitStoredIDs queues, in one group with new appends, appends
// of IDs that are stored already: retries (same content, one of them with
// an expectation that is stale by now) succeed with the stored positions,
// a different content fails alone, and the rest commit in one transaction.
func TestGroupCommitStoredIDs(t *testing.T) {
	t.Parallel()
	s := open(t)
	stored := recs("s", 3)
	for i := range stored {
		stored[i].AggregateID = "acct"
	}
	// Stored through AppendTx, not Append, so that the writer goroutine
	// has not committed yet and is certainly idle: after a commit it may
	// still be preparing statements on the connection holdWriter takes.
	tx, err := s.DB().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendTx(t.Context(), tx, stored, store.Expect{AggregateID: "acct", Version: 0}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	release := holdWriter(t, s)
	before := sqlitestore.Commits(s)

	retry := []store.Record{stored[0]}
	retry[0].Position, retry[0].Version = 0, 0
	staleRetry := []store.Record{stored[1], stored[2]}
	for i := range staleRetry {
		staleRetry[i].Position, staleRetry[i].Version = 0, 0
	}
	changed := []store.Record{stored[2]}
	changed[0].Payload = []byte(`{"changed":true}`)
	fresh := recs("new", 4)
	calls := []struct {
		recs   []store.Record
		expect []store.Expect
	}{
		{recs: fresh[:2]},
		{recs: retry},
		{recs: staleRetry, expect: []store.Expect{{AggregateID: "acct", Version: 1}}},
		{recs: changed},
		{recs: fresh[2:]},
	}
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() { errs[i] = s.Append(t.Context(), c.recs, c.expect...) })
	}
	waitUntil(t, "appends to queue", func() bool { return sqlitestore.Queued(s) == len(calls)-1 })
	release()
	wg.Wait()

	for i, err := range errs {
		if i == 3 {
			if !errors.Is(err, store.ErrDuplicateID) {
				t.Errorf("append of a stored ID with other content: %v, want ErrDuplicateID", err)
			}
		} else if err != nil {
			t.Errorf("append %d: %v", i, err)
		}
	}
	if retry[0].Position != stored[0].Position || retry[0].Version != 1 {
		t.Errorf("retry got position %d version %d, want the stored %d and 1", retry[0].Position, retry[0].Version, stored[0].Position)
	}
	for i, r := range staleRetry {
		if r.Position != stored[i+1].Position || r.Version != int64(i+2) {
			t.Errorf("retry with a stale expectation: record %s got position %d version %d, want %d and %d",
				r.ID, r.Position, r.Version, stored[i+1].Position, i+2)
		}
	}
	if got := sqlitestore.Commits(s) - before; got != 1 {
		t.Fatalf("the queued appends took %d transactions, want 1", got)
	}
	all, _, err := s.Read(t.Context(), store.Query{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range all {
		got = append(got, r.ID)
	}
	// The queued appends' order among themselves is the queue's.
	slices.Sort(got[3:])
	want := []string{"s-0", "s-1", "s-2", "new-0", "new-1", "new-2", "new-3"}
	if !slices.Equal(got, want) {
		t.Fatalf("log holds %v, want %v (the last four in any order)", got, want)
	}
}

// TestGroupCommitCarefulAfterRedo checks that a run of appends of stored
// IDs, such as a relay resending its outbox, costs one redo, not one per
// append, and that commits turn optimistic again after the run.
func TestGroupCommitCarefulAfterRedo(t *testing.T) {
	t.Parallel()
	s := open(t)
	stored := recs("r", 5)
	if err := s.Append(t.Context(), stored); err != nil {
		t.Fatal(err)
	}
	resend := func() {
		for _, r := range stored {
			again := []store.Record{r}
			if err := s.Append(t.Context(), again); err != nil || again[0].Position != r.Position {
				t.Fatalf("resending %s: position %d, %v; want its stored position %d", r.ID, again[0].Position, err, r.Position)
			}
		}
	}
	resend()
	if got := sqlitestore.Redos(s); got != 1 {
		t.Fatalf("resending 5 stored records one by one took %d redos, want 1", got)
	}
	for i := range sqlitestore.CarefulCommits {
		if err := s.Append(t.Context(), recs(fmt.Sprintf("fresh%d", i), 1)); err != nil {
			t.Fatal(err)
		}
	}
	resend()
	if got := sqlitestore.Redos(s); got != 2 {
		t.Fatalf("after %d fresh commits, resending took the redo count to %d, want 2", sqlitestore.CarefulCommits, got)
	}
}

// TestGroupCommitMaxBatch checks that a commit takes at most maxBatch
// records (a larger single Append aside).
func TestGroupCommitMaxBatch(t *testing.T) {
	t.Parallel()
	s := open(t, sqlitestore.WithGroupCommit(10, 0))
	release := holdWriter(t, s)
	before := sqlitestore.Commits(s)
	const n = 40 // appends of 1 record
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := s.Append(t.Context(), recs(fmt.Sprintf("m%d", i), 1)); err != nil {
				t.Error(err)
			}
		})
	}
	waitUntil(t, "appends to queue", func() bool { return sqlitestore.Queued(s) == n-1 })
	release()
	wg.Wait()
	if got := sqlitestore.Commits(s) - before; got != n/10 {
		t.Fatalf("%d one-record appends with max batch 10 took %d transactions, want %d", n, got, n/10)
	}
	if err := s.Append(t.Context(), recs("big", 25)); err != nil {
		t.Fatalf("an append larger than the max batch: %v", err)
	}
}

// TestGroupCommitMaxDelay checks that with a delay, appends that arrive
// one after another within it share a commit.
func TestGroupCommitMaxDelay(t *testing.T) {
	t.Parallel()
	s := open(t, sqlitestore.WithGroupCommit(1000, time.Minute))
	before := sqlitestore.Commits(s)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if err := s.Append(t.Context(), recs(fmt.Sprintf("d%d", i), 200)); err != nil {
				t.Error(err)
			}
		})
	}
	// 5 × 200 records reach the max batch long before the delay ends.
	wg.Wait()
	if got := sqlitestore.Commits(s) - before; got != 1 {
		t.Fatalf("appends within the delay took %d transactions, want 1", got)
	}
}

// TestAppendCancelledWhileQueued checks that an Append whose context ends
// while it waits for the writer stores nothing.
func TestAppendCancelledWhileQueued(t *testing.T) {
	t.Parallel()
	s := open(t)
	release := holdWriter(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Append(ctx, []store.Record{rec("cancelled")}) }()
	other := make(chan error, 1)
	go func() { other <- s.Append(t.Context(), []store.Record{rec("kept")}) }()
	waitUntil(t, "appends to queue", func() bool { return sqlitestore.Queued(s) == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) || errors.Is(err, store.ErrMaybeStored) {
		t.Fatalf("Append cancelled while queued: %v, want context.Canceled and not ErrMaybeStored", err)
	}
	release()
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(t.Context(), "cancelled"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Load of the cancelled append: %v, want ErrNotFound", err)
	}
}

// TestAppendContextEndsWhileCommitting ends an Append's context after the
// writer took it into a transaction: Append must return at once, saying
// that the append may have been stored, the commit must go on, and a retry
// with the same ID must store nothing more.
func TestAppendContextEndsWhileCommitting(t *testing.T) {
	t.Parallel()
	s := open(t)
	taken, resume := make(chan struct{}), make(chan struct{})
	sqlitestore.SetAfterTake(s, func() {
		taken <- struct{}{}
		<-resume
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	done := make(chan error, 1)
	go func() { done <- s.Append(ctx, []store.Record{rec("maybe")}) }()
	<-taken
	cancel()
	var err error
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		close(resume)
		t.Fatal("Append did not return when its context ended during the commit")
	}
	if !errors.Is(err, store.ErrMaybeStored) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Append whose context ended during the commit: %v, want ErrMaybeStored and context.Canceled", err)
	}
	close(resume)
	waitUntil(t, "the commit", func() bool { return sqlitestore.Commits(s) == 1 })
	if _, err := s.Load(t.Context(), "maybe"); err != nil {
		t.Fatalf("Load of the append the writer had taken: %v", err)
	}
	go func() {
		for range taken { // the retry's commit
		}
	}()
	retry := []store.Record{rec("maybe")}
	if err := s.Append(t.Context(), retry); err != nil {
		t.Fatalf("retry: %v", err)
	}
	close(taken)
	got, _, err := s.Read(t.Context(), store.Query{})
	if err != nil || len(got) != 1 || got[0].Position != retry[0].Position {
		t.Fatalf("after the retry the log holds %d records (%v), want the one record, at the position the retry got", len(got), err)
	}
}

// TestCloseWhileWriterHeld closes the store while a caller's transaction
// holds the writer and appends wait: Close returns and the appends fail
// with ErrClosed.
func TestCloseWhileWriterHeld(t *testing.T) {
	t.Parallel()
	s := open(t)
	release := holdWriter(t, s)
	defer release()
	const n = 3
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- s.Append(t.Context(), recs(fmt.Sprintf("c%d", i), 1)) }()
	}
	waitUntil(t, "appends to queue", func() bool { return sqlitestore.Queued(s) == n-1 })
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	for range n {
		if err := <-errs; !errors.Is(err, store.ErrClosed) {
			t.Errorf("Append waiting during Close: %v, want ErrClosed", err)
		}
	}
	release()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
}

// TestOutboxWithApplicationTable writes an application table and events in
// one transaction on DB.
func TestOutboxWithApplicationTable(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := t.Context()
	db := s.DB()
	if _, err := db.ExecContext(ctx, `CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	register := func(id string, commit bool) {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if _, err := tx.ExecContext(ctx, `INSERT INTO users VALUES (?, ?)`, id, id+"@example.com"); err != nil {
			t.Fatal(err)
		}
		r := rec("registered-" + id)
		r.AggregateID = "user-" + id
		if err := s.AppendTx(ctx, tx, []store.Record{r}, store.Expect{AggregateID: r.AggregateID}); err != nil {
			t.Fatal(err)
		}
		if commit {
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	register("ann", true)
	register("bob", false)
	var users int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&users); err != nil || users != 1 {
		t.Fatalf("users = %d, %v; want 1", users, err)
	}
	got, _, err := s.Read(ctx, store.Query{})
	if err != nil || len(got) != 1 || got[0].ID != "registered-ann" {
		t.Fatalf("events = %v, %v; want registered-ann only", got, err)
	}
	// The application table does not stop the file from reopening.
	path := filepath.Join(t.TempDir(), "reopen.db")
	s2 := mustOpen(t, path)
	if _, err := s2.DB().ExecContext(ctx, `CREATE TABLE orders (id TEXT)`); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	mustOpen(t, path)
}

func TestAppendTxFromOtherDatabase(t *testing.T) {
	t.Parallel()
	s := open(t)
	other := rawDB(t, filepath.Join(t.TempDir(), "other.db"))
	tx, err := other.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := s.AppendTx(t.Context(), tx, []store.Record{rec("x")}); err == nil {
		t.Fatal("AppendTx with a transaction of another database succeeded")
	}
	if err := s.AppendTx(t.Context(), nil, []store.Record{rec("x")}); err == nil {
		t.Fatal("AppendTx with a nil transaction succeeded")
	}
}

func TestCursorFormat(t *testing.T) {
	t.Parallel()
	for c, want := range map[store.Cursor]int64{"": 0, "p1": 1, "p42": 42, "p9223372036854775807": 1<<63 - 1} {
		got, err := sqlitestore.DecodeCursor(c)
		if err != nil || got != want {
			t.Errorf("DecodeCursor(%q) = %d, %v; want %d", c, got, err, want)
		}
	}
	for _, c := range []store.Cursor{"p", "p0", "p01", "p-1", "p+1", "1", "P1", "p1 ", "p9223372036854775808", "p١"} {
		if _, err := sqlitestore.DecodeCursor(c); !errors.Is(err, store.ErrInvalidCursor) {
			t.Errorf("DecodeCursor(%q) = %v, want ErrInvalidCursor", c, err)
		}
	}
}

// TestCursorPastEnd checks that a well-formed cursor this log never reached
// is refused rather than waited on forever.
func TestCursorPastEnd(t *testing.T) {
	t.Parallel()
	s := open(t)
	if err := s.Append(t.Context(), recs("e", 2)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Read(t.Context(), store.Query{After: "p1000"}); !errors.Is(err, store.ErrInvalidCursor) {
		t.Fatalf("Read after a cursor past the end: %v, want ErrInvalidCursor", err)
	}
}

func TestSetCheckpointValidates(t *testing.T) {
	t.Parallel()
	s := open(t)
	if err := s.SetCheckpoint(t.Context(), "", ""); err == nil {
		t.Error("SetCheckpoint with an empty name succeeded")
	}
	if err := s.SetCheckpoint(t.Context(), "x", "garbage"); !errors.Is(err, store.ErrInvalidCursor) {
		t.Errorf("SetCheckpoint with a foreign cursor: %v, want ErrInvalidCursor", err)
	}
	if err := s.PutDeadLetter(t.Context(), store.DeadLetterRecord{Record: rec("x")}); err == nil {
		t.Error("PutDeadLetter without subscription succeeded")
	}
	if _, _, err := s.Read(t.Context(), store.Query{Limit: -1}); err == nil {
		t.Error("Read with a negative limit succeeded")
	}
}

// TestNotifySeesOtherWriters checks that Notify signals appends that do not go
// through the store's group commit: AppendTx and another store on the file.
func TestNotifySeesOtherWriters(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path, sqlitestore.WithPollInterval(5*time.Millisecond))
	other := mustOpen(t, path)
	ch, err := s.Notify(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	expectSignal := func(what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("no signal for %s", what)
		}
	}

	tx, err := s.DB().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AppendTx(t.Context(), tx, []store.Record{rec("tx")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	expectSignal("AppendTx")

	if err := other.Append(t.Context(), []store.Record{rec("other")}); err != nil {
		t.Fatal(err)
	}
	expectSignal("an append by another store")
}

// An append in the caller's transaction inserts without looking its IDs
// up; a stored ID is still a no-op, a changed one still refused, and a
// failed append leaves the transaction usable.
func TestAppendTxStoredIDs(t *testing.T) {
	ctx := t.Context()
	s := open(t)
	if err := s.Append(ctx, []store.Record{rec("stored")}); err != nil {
		t.Fatal(err)
	}
	stored, err := s.Load(ctx, "stored")
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	fresh := []store.Record{rec("fresh")}
	if err := s.AppendTx(ctx, tx, fresh); err != nil {
		t.Fatal(err)
	}
	retry := []store.Record{rec("stored"), rec("fresh-2")}
	if err := s.AppendTx(ctx, tx, retry); err != nil {
		t.Fatalf("AppendTx of a stored ID and a new one: %v", err)
	}
	if retry[0].Position != stored.Position || retry[1].Position <= fresh[0].Position {
		t.Errorf("positions %d and %d, want the stored %d and a new one after %d", retry[0].Position, retry[1].Position, stored.Position, fresh[0].Position)
	}
	changed := rec("stored")
	changed.Topic = "other.topic"
	if err := s.AppendTx(ctx, tx, []store.Record{changed}); !errors.Is(err, store.ErrDuplicateID) {
		t.Fatalf("AppendTx of a stored ID with other content = %v, want ErrDuplicateID", err)
	}
	if err := s.AppendTx(ctx, tx, []store.Record{rec("after")}); err != nil {
		t.Fatalf("AppendTx after a refused one: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	recs, _, err := s.Read(ctx, store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	if got := strings.Join(ids, ","); got != "stored,fresh,fresh-2,after" {
		t.Errorf("log holds %s, want stored,fresh,fresh-2,after", got)
	}
}
