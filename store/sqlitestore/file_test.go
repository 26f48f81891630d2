package sqlitestore_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// checkOpenFails opens path and fails t unless Open fails with an error
// that contains every one of want.
func checkOpenFails(t *testing.T, path string, want ...string) {
	t.Helper()
	s, err := sqlitestore.Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatalf("Open(%s) succeeded, want an error", path)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Open(%s): error %q does not say %q", path, err, w)
		}
	}
}

// TestOpenMissingDirectory checks that Open says which directory is
// missing, and does not create it.
func TestOpenMissingDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	checkOpenFails(t, filepath.Join(dir, "events.db"), "directory "+dir+" does not exist", "create it")
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after Open, stat %s: %v; want it still missing", dir, err)
	}
}

func TestOpenParentIsFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(file, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	checkOpenFails(t, filepath.Join(file, "events.db"), file+" is not a directory")
}

func TestOpenDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	checkOpenFails(t, dir, dir+" is a directory, not a database file")
}

// readOnly makes path unwritable, even to root (which ignores permission
// bits) by marking it immutable, and undoes that when t ends. It skips t
// where it cannot.
func readOnly(t *testing.T, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, fi.Mode().Perm()&^0o222); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(path, fi.Mode().Perm()) })
		return
	}
	if out, err := exec.Command("chattr", "+i", path).CombinedOutput(); err != nil {
		t.Skipf("cannot make %s read-only as root: chattr +i: %v %s", path, err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
}

// TestOpenReadOnlyDirectory checks that Open says the directory is not
// writable, both for a new file and for an existing database, whose -wal
// and -shm files SQLite must be able to create beside it.
func TestOpenReadOnlyDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.db")
	mustOpen(t, existing).Close()
	readOnly(t, dir)
	checkOpenFails(t, filepath.Join(dir, "events.db"), "directory "+dir+" is not writable")
	checkOpenFails(t, existing, "directory "+dir+" is not writable")
}

// TestOpenReadOnlyFile checks that Open refuses a database it may only read,
// which SQLite would open read-only without a word, so that the first
// Append failed instead.
func TestOpenReadOnlyFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	mustOpen(t, path).Close()
	readOnly(t, path)
	checkOpenFails(t, path, path+" is not writable")
}

// checkUnavailable fails t unless err matches store.ErrUnavailable and
// names path and what happened to it.
func checkUnavailable(t *testing.T, what string, err error, path, happened string) {
	t.Helper()
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("%s: %v, want an error matching store.ErrUnavailable", what, err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), happened) {
		t.Fatalf("%s: error %q does not say that %s was %s", what, err, path, happened)
	}
}

// logIDs returns the IDs in the event database at path, read by a store
// of its own.
func logIDs(t *testing.T, path string) []string {
	t.Helper()
	s := mustOpen(t, path)
	defer s.Close()
	var ids []string
	for r, err := range store.All(t.Context(), s, store.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

// TestAppendAfterFileDeleted deletes the database file under an open
// store: appends must fail rather than go on into the deleted file.
func TestAppendAfterFileDeleted(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path)
	if err := s.Append(t.Context(), []store.Record{rec("before")}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // and it keeps failing
		err := s.Append(t.Context(), []store.Record{rec(fmt.Sprintf("after-%d", i))})
		checkUnavailable(t, "Append after the file was deleted", err, path, "deleted")
	}
	tx, err := s.DB().BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.AppendTx(t.Context(), tx, []store.Record{rec("in-tx")})
	tx.Rollback()
	checkUnavailable(t, "AppendTx after the file was deleted", err, path, "deleted")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAppendAfterFileReplaced moves the database file away and puts
// another event database at its path, as restoring a backup would: appends
// must fail, the records stored before stay in the moved file, and the
// new file gets none, whether an append noticed the change or only Close.
func TestAppendAfterFileReplaced(t *testing.T) {
	t.Parallel()
	for _, appendAfter := range []bool{true, false} {
		t.Run(fmt.Sprintf("append=%v", appendAfter), func(t *testing.T) {
			t.Parallel()
			testFileReplaced(t, appendAfter)
		})
	}
}

func testFileReplaced(t *testing.T, appendAfter bool) {
	dir := t.TempDir()
	path, moved, other := filepath.Join(dir, "events.db"), filepath.Join(dir, "moved.db"), filepath.Join(dir, "other.db")
	o := mustOpen(t, other)
	if err := o.Append(t.Context(), []store.Record{rec("other")}); err != nil {
		t.Fatal(err)
	}
	o.Close()

	s := mustOpen(t, path)
	if err := s.Append(t.Context(), []store.Record{rec("before")}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	if appendAfter {
		err := s.Append(t.Context(), []store.Record{rec("after")})
		checkUnavailable(t, "Append after the file was replaced", err, path, "replaced")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := logIDs(t, moved); !slices.Equal(got, []string{"before"}) {
		t.Errorf("the file the store had open holds %v, want [before]", got)
	}
	if got := logIDs(t, path); !slices.Equal(got, []string{"other"}) {
		t.Errorf("the file that replaced it holds %v, want [other]", got)
	}
}
