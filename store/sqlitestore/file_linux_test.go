package sqlitestore_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// childEnv names what TestChild does in a process of its own: limits that
// would hurt the other tests of this process, or a private mount.
const childEnv = "SQLITESTORE_TEST_CHILD"

// TestChild is not a test: the tests below run the test binary again with
// childEnv set, and this does what it says, printing lines for the parent.
func TestChild(t *testing.T) {
	what, path, ok := strings.Cut(os.Getenv(childEnv), ":")
	if !ok {
		t.Skip("runs only as a child process of the tests below")
	}
	switch what {
	case "fsize":
		// Appends until a write fails at a file size limit of 256 KiB.
		lim := syscall.Rlimit{Cur: 256 << 10, Max: 256 << 10}
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
			t.Fatal(err)
		}
		s, err := sqlitestore.Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := 0; i < 1000; i++ {
			r := store.Record{ID: strconv.Itoa(i), Topic: "file.grown", Time: time.Now(), Payload: make([]byte, 4096)}
			if err := s.Append(t.Context(), []store.Record{r}); err != nil {
				fmt.Printf("stored %d\nerror %v\n", i, err)
				return
			}
		}
		fmt.Println("stored all")
	case "open":
		s, err := sqlitestore.Open(t.Context(), path)
		if err == nil {
			s.Close()
		}
		fmt.Printf("error %v\n", err)
	}
}

// child runs TestChild in a new process, under the command prefix wrap if
// any, and returns its output.
func child(t *testing.T, wrap []string, what, path string) (string, error) {
	t.Helper()
	args := append(wrap, os.Args[0], "-test.run=^TestChild$", "-test.count=1")
	cmd := exec.CommandContext(t.Context(), args[0], args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"="+what+":"+path)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// line returns the text after prefix on the first line of out that has it.
func line(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok {
			return rest
		}
	}
	return ""
}

// TestAppendFileTooLarge checks that an Append whose write hits the file
// size limit says so, and that every append that succeeded before it is
// kept.
func TestAppendFileTooLarge(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	out, err := child(t, nil, "fsize", path)
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	msg := line(out, "error ")
	if msg == "" {
		t.Fatalf("no append failed at the file size limit:\n%s", out)
	}
	for _, want := range []string{"file too large", path, "RLIMIT_FSIZE"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not say %q", msg, want)
		}
	}
	n, err := strconv.Atoi(line(out, "stored "))
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	s := mustOpen(t, path)
	var got int
	for _, err := range store.All(t.Context(), s, store.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		got++
	}
	if got != n {
		t.Fatalf("after reopening, the log holds %d records; %d appends succeeded", got, n)
	}
}

// TestOpenReadOnlyFileSystem mounts a read-only file system in a mount
// namespace of a child process's own, where Open must say so.
func TestOpenReadOnlyFileSystem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	script := `mount -t tmpfs -o ro none "$0" && exec "$@"`
	wrap := []string{"unshare", "--mount", "--map-root-user", "sh", "-c", script, dir}
	if out, err := exec.Command(wrap[0], append(wrap[1:], "true")...).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a read-only file system in a mount namespace: %v %s", err, out)
	}
	path := filepath.Join(dir, "events.db")
	out, err := child(t, wrap, "open", path)
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if msg := line(out, "error "); !strings.Contains(msg, "directory "+dir+" is on a read-only file system") {
		t.Fatalf("Open on a read-only file system: %q, want it to say so", msg)
	}
}
