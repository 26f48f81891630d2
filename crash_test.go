package event_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
	"github.com/ncore-io/event/store/sqlitestore"
)

// The crash test re-executes the test binary as a child that publishes
// events and handles them with a durable subscription, and kills it with
// SIGKILL at random moments. The child logs each event ID once Publish has
// returned nil for it (published.log), and each event its handler saw
// (handled.log); a single write(2) per line, so a kill cannot tear a line.
const (
	crashChildEnv   = "EVENT_CRASH_CHILD" // "sqlite:PATH" or "postgres:DSN"
	crashDirEnv     = "EVENT_CRASH_DIR"
	crashCheckpoint = 50 // events between checkpoints: the most a crash repeats
)

func openCrashStore(ctx context.Context, spec string) (store.Store, error) {
	kind, where, _ := strings.Cut(spec, ":")
	if kind == "sqlite" {
		return sqlitestore.Open(ctx, where)
	}
	return pgstore.Open(ctx, where)
}

// crashChild runs until it is killed.
func crashChild() int {
	ctx := context.Background()
	dir := os.Getenv(crashDirEnv)
	s, err := openCrashStore(ctx, os.Getenv(crashChildEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 2
	}
	published, err1 := os.OpenFile(filepath.Join(dir, "published.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	handled, err2 := os.OpenFile(filepath.Join(dir, "handled.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err1, err2)
		return 2
	}
	bus, err := event.New[Registered](event.WithStore(s), event.WithPollInterval(20*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 2
	}
	_, err = event.Subscribe(bus, "user.>", func(ctx context.Context, ev event.Event[Registered]) error {
		_, err := handled.WriteString(ev.ID.String() + "\n")
		return err
	}, event.Durable("crash"), event.Checkpoint(crashCheckpoint, time.Hour))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 2
	}
	for i := 0; ; i++ {
		agg := fmt.Sprintf("u-%d", i%10)
		id := uuid.New()
		if err := bus.Publish(ctx, "user.registered", Registered{UserID: agg, N: i}, event.Aggregate(agg), event.EventID(id)); err != nil {
			fmt.Fprintln(os.Stderr, "crash child: publish:", err)
			return 2
		}
		published.WriteString(id.String() + "\n")
	}
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the binary; skipped with -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			spec := "sqlite:" + filepath.Join(dir, "events.db")
			if kind == "postgres" {
				spec = "postgres:" + pgtest.DSN(t)
			}
			const kills = 5
			for k := range kills {
				cmd := exec.Command(exe, "-test.run=^$")
				cmd.Env = append(os.Environ(), crashChildEnv+"="+spec, crashDirEnv+"="+dir)
				var stderr strings.Builder
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				// Let it publish and handle for a while, then kill it at a
				// random moment: before, during or after a checkpoint.
				time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
				cmd.Process.Signal(syscall.SIGKILL)
				err := cmd.Wait()
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
					t.Fatalf("run %d: child ended by itself (%v): %s", k, err, stderr.String())
				}
			}
			published := readLines(t, filepath.Join(dir, "published.log"))
			if len(published) < kills {
				t.Fatalf("only %d events published across %d runs", len(published), kills)
			}

			// Recovery: the same durable subscription in this process
			// catches up on whatever the children left unhandled.
			ctx := t.Context()
			s, err := openCrashStore(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			defer s.(interface{ Close() error }).Close()
			bus := newStoreBus[Registered](t, s)
			after := newSeen[Registered]()
			event.Subscribe(bus, "user.>", after.handler, event.Durable("crash"), event.Checkpoint(crashCheckpoint, time.Hour))

			handled := map[string]int{}
			for _, id := range readLines(t, filepath.Join(dir, "handled.log")) {
				handled[id]++
			}
			missing := func() []string {
				var m []string
				have := map[string]bool{}
				for _, ev := range after.snapshot() {
					have[ev.ID.String()] = true
				}
				for _, id := range published {
					if handled[id] == 0 && !have[id] {
						m = append(m, id)
					}
				}
				return m
			}
			deadline := time.Now().Add(30 * time.Second)
			for len(missing()) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d published events never handled, e.g. %s", len(missing()), len(published), missing()[0])
				}
				select {
				case <-after.signal:
				case <-time.After(100 * time.Millisecond):
				}
			}
			if err := bus.Close(ctx); err != nil {
				t.Fatal(err)
			}
			for _, ev := range after.snapshot() {
				handled[ev.ID.String()]++
			}
			// None lost from the store.
			for _, id := range published {
				if _, err := s.Load(ctx, id); err != nil {
					t.Fatalf("published event %s not in the store: %v", id, err)
				}
			}
			dups := 0
			for _, n := range handled {
				dups += n - 1
			}
			// Each kill repeats at most the events since the last checkpoint.
			if limit := kills * crashCheckpoint; dups > limit {
				t.Fatalf("%d events handled twice, more than %d kills × %d-event checkpoint bound", dups, kills, crashCheckpoint)
			}
			t.Logf("%d events published over %d killed runs, %d handled again after a crash (bound %d)", len(published), kills, dups, kills*crashCheckpoint)
		})
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := sc.Text(); len(l) == 36 {
			lines = append(lines, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
