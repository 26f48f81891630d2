package sqlitestore_test

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
