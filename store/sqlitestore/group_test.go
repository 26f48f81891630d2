package sqlitestore_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// TestMigratePartitions opens a file of schema version 1, from before
// partitions, and checks that its records were given their partitions.
func TestMigratePartitions(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	script, err := os.ReadFile("schema/1.sql")
	if err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	if _, err := db.Exec(string(script)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO event_meta (key, value) VALUES ('schema_version', '1')`); err != nil {
		t.Fatal(err)
	}
	const n = 1500 // more than one page of the backfill
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		agg := any(nil)
		if i%2 == 0 {
			agg = fmt.Sprintf("agg-%d", i%7)
		}
		if _, err := tx.Exec(`INSERT INTO event_log (id, topic, kind, aggregate_id, version, time_us, payload_type, content_type) VALUES (?, 't.x', 'domain', ?, ?, 0, '', '')`,
			fmt.Sprintf("old-%d", i), agg, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := sqlitestore.Open(t.Context(), path, sqlitestore.WithPartitions(8))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Partitions() != 8 {
		t.Fatalf("Partitions() = %d, want 8", s.Partitions())
	}
	total := 0
	for p := range 8 {
		page, err := s.ReadPartitions(t.Context(), []store.PartitionCursor{{Partition: p}}, store.MaxReadLimit)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			if got := store.Partition(r.AggregateID, r.ID, 8); got != p {
				t.Fatalf("record %s was put in partition %d, store.Partition says %d", r.ID, p, got)
			}
		}
		total += len(page)
	}
	if total != n {
		t.Fatalf("partitions hold %d records after the migration, want %d", total, n)
	}
}

// TestOldVersionAppend checks that a process of schema version 1 that
// opened the file before another migrated it cannot append records
// without a partition, which no group would read, and is told why.
func TestOldVersionAppend(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	script, err := os.ReadFile("schema/1.sql")
	if err != nil {
		t.Fatal(err)
	}
	old := rawDB(t, path) // the old process, which keeps its connection
	if _, err := old.Exec(string(script)); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`INSERT INTO event_meta (key, value) VALUES ('schema_version', '1')`); err != nil {
		t.Fatal(err)
	}
	const insert = `INSERT INTO event_log (id, topic, kind, version, time_us, payload_type, content_type) VALUES (?, 't.x', 'domain', 0, 0, '', '')`
	if _, err := old.Exec(insert, "before"); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, path) // migrates to version 2
	_, err = old.Exec(insert, "after")
	if err == nil || !strings.Contains(err.Error(), "older than schema version 2") || !strings.Contains(err.Error(), "upgrade every process") {
		t.Fatalf("append by a version 1 process after the migration = %v, want an error saying it is older than schema version 2", err)
	}
	page, _, err := s.Read(t.Context(), store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || page[0].ID != "before" {
		t.Fatalf("log after the refused append = %v, want only the record from before the migration", page)
	}
	// The store's own appends, which give every record its partition, go on.
	if err := s.Append(t.Context(), []store.Record{rec("new")}); err != nil {
		t.Fatal(err)
	}
}

func TestPartitionsFixed(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path, sqlitestore.WithPartitions(16))
	s.Close()
	if _, err := sqlitestore.Open(t.Context(), path, sqlitestore.WithPartitions(32)); err == nil || !strings.Contains(err.Error(), "has 16 partitions") {
		t.Fatalf("Open with another partition count = %v, want an error naming the stored 16", err)
	}
	s2 := mustOpen(t, path)
	if s2.Partitions() != 16 {
		t.Fatalf("Partitions() = %d after reopening, want the stored 16", s2.Partitions())
	}
	if _, err := sqlitestore.Open(t.Context(), filepath.Join(t.TempDir(), "x.db"), sqlitestore.WithPartitions(0x10000)); err == nil || !strings.Contains(err.Error(), "partition count") {
		t.Fatalf("Open with too many partitions = %v", err)
	}
}

// A member whose process exited loses its partitions to the next claim
// from the same host at once, without waiting for its lease.
func TestGroupExitedProcess(t *testing.T) {
	t.Parallel()
	s := open(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run a process to get a pid that has exited: %v", err)
	}
	if a, err := s.Claim(t.Context(), "g", "gone", time.Hour); err != nil || len(a.Leases) != s.Partitions() {
		t.Fatalf("Claim = %d leases, %v", len(a.Leases), err)
	}
	if _, err := s.DB().Exec(`UPDATE event_group_members SET pid = ? WHERE member = 'gone'`, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	a, err := s.Claim(t.Context(), "g", "next", time.Hour)
	if err != nil || len(a.Leases) != s.Partitions() || a.Members != 1 {
		t.Fatalf("Claim after the holder's process exited = %d leases, %d members, %v; want all %d, 1", len(a.Leases), a.Members, err, s.Partitions())
	}
	for _, l := range a.Leases {
		if !l.TakenOver {
			t.Fatalf("partition %d of the exited member is not marked taken over", l.Partition)
		}
	}
	// A live process's member keeps them.
	if b, err := s.Claim(t.Context(), "g", "third", time.Hour); err != nil || len(b.Leases) != 0 {
		t.Fatalf("Claim while a live member holds everything = %d leases, %v", len(b.Leases), err)
	}
}

// TestGroupHostIdentity checks that on Linux the host a member's row
// names includes the PID namespace of its process, since a process can
// tell whether another has exited only within its own namespace.
func TestGroupHostIdentity(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no host name: %v", err)
	}
	got := sqlitestore.ThisHost()
	want := host
	if runtime.GOOS == "linux" {
		ns, err := os.Readlink("/proc/self/ns/pid")
		if err != nil {
			t.Skipf("no PID namespace to read: %v", err)
		}
		want = host + " " + ns
	}
	if got != want {
		t.Fatalf("members name their host %q, want %q", got, want)
	}
	s := open(t)
	if _, err := s.Claim(t.Context(), "g", "m", time.Minute); err != nil {
		t.Fatal(err)
	}
	var stored string
	if err := s.DB().QueryRow(`SELECT host FROM event_group_members WHERE member = 'm'`).Scan(&stored); err != nil || stored != want {
		t.Fatalf("member row names host %q (%v), want %q", stored, err, want)
	}
}

// A member of a process on the same host but in another PID namespace (a
// container sharing the host name, as with host networking) keeps its
// partitions: its PID means nothing here, and whether it lives is left to
// its lease.
func TestGroupOtherPIDNamespace(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("PID namespaces are Linux's")
	}
	s := open(t)
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run a process to get a pid that has exited: %v", err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no host name: %v", err)
	}
	if a, err := s.Claim(t.Context(), "g", "elsewhere", time.Hour); err != nil || len(a.Leases) != s.Partitions() {
		t.Fatalf("Claim = %d leases, %v", len(a.Leases), err)
	}
	// As the other namespace's process would write it: the same host
	// name, its own namespace, and a PID that no process has here.
	other := host + " pid:[1]"
	if other == sqlitestore.ThisHost() {
		other = host + " pid:[2]"
	}
	if _, err := s.DB().Exec(`UPDATE event_group_members SET host = ?, pid = ? WHERE member = 'elsewhere'`, other, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	a, err := s.Claim(t.Context(), "g", "here", time.Hour)
	if err != nil || len(a.Leases) != 0 || a.Members != 2 {
		t.Fatalf("Claim while a member of another PID namespace holds everything = %d leases, %d members, %v; want none, 2", len(a.Leases), a.Members, err)
	}
	// The same row naming this namespace is judged by its PID, and dropped.
	if _, err := s.DB().Exec(`UPDATE event_group_members SET host = ? WHERE member = 'elsewhere'`, sqlitestore.ThisHost()); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Claim(t.Context(), "g", "here", time.Hour); err != nil || len(a.Leases) != s.Partitions() || a.Members != 1 {
		t.Fatalf("Claim after the member's process in this namespace exited = %d leases, %d members, %v; want all %d, 1", len(a.Leases), a.Members, err, s.Partitions())
	}
}

// TestPartitionIndexAtFirstClaim checks that a log no group reads keeps no
// partition index, which would slow every append, and that the first claim
// makes it.
func TestPartitionIndexAtFirstClaim(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "events.db")
	s := mustOpen(t, path)
	indexed := func() bool {
		t.Helper()
		var n int
		if err := rawDB(t, path).QueryRow(`SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'event_log_part'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if err := s.Append(t.Context(), []store.Record{{ID: "a", Topic: "t.x", Kind: store.KindDomain, Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if indexed() {
		t.Fatal("a new log has the partition index before any group claimed")
	}
	if _, err := s.Claim(t.Context(), "g", "m1", time.Second); err != nil {
		t.Fatal(err)
	}
	if !indexed() {
		t.Fatal("no partition index after the first claim")
	}
	s.Close()
	// A store opened on a file with the index claims again without trouble.
	s2 := mustOpen(t, path)
	defer s2.Close()
	if _, err := s2.Claim(t.Context(), "g", "m2", time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestReadPartitionsMany reads more partitions at once than SQLite allows
// terms in one compound SELECT (500): a member holding all of 1000
// partitions reads each record once, in global order, and goes on from
// where it ended.
func TestReadPartitionsMany(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, sqlitestore.WithPartitions(1000))
	a, err := s.Claim(ctx, "g", "all", time.Minute)
	if err != nil || len(a.Leases) != 1000 {
		t.Fatalf("Claim = %d leases, %v; want all 1000", len(a.Leases), err)
	}
	from := make([]store.PartitionCursor, len(a.Leases))
	for i, l := range a.Leases {
		from[i] = store.PartitionCursor{Partition: l.Partition, After: l.Cursor}
	}
	// A quarter of the records in a few aggregates, so that some
	// partitions have many records and most have few or none.
	batch := recs("many", 300)
	for i := range batch {
		if i%4 == 0 {
			batch[i].AggregateID = fmt.Sprintf("agg-%d", i%13)
		}
	}
	if err := s.Append(ctx, batch); err != nil {
		t.Fatal(err)
	}
	all, _, err := s.Read(ctx, store.Query{Limit: store.MaxReadLimit})
	if err != nil || len(all) != len(batch) {
		t.Fatalf("Read = %d records, %v", len(all), err)
	}
	read := func(limit int) []store.Record {
		t.Helper()
		var got []store.Record
		for round := 0; ; round++ {
			page, err := s.ReadPartitions(ctx, from, limit)
			if err != nil {
				t.Fatalf("ReadPartitions of %d partitions: %v", len(from), err)
			}
			if len(page) > limit {
				t.Fatalf("ReadPartitions(limit %d) = %d records for %d partitions", limit, len(page), len(from))
			}
			got = append(got, page...)
			if len(page) == 0 {
				return got
			}
			if round > 1000 {
				t.Fatal("ReadPartitions does not reach the end")
			}
		}
	}
	check := func(what string, got, want []store.Record) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
		}
		for i := range got {
			if got[i].ID != want[i].ID || got[i].Position != want[i].Position {
				t.Fatalf("%s: record %d is %s at %d, want %s at %d", what, i, got[i].ID, got[i].Position, want[i].ID, want[i].Position)
			}
		}
	}
	check("ReadPartitions of 1000 partitions, 200 at a time", read(200), all)
	more := recs("more", 20)
	if err := s.Append(ctx, more); err != nil {
		t.Fatal(err)
	}
	tail, _, err := s.Read(ctx, store.Query{After: all[len(all)-1].Cursor})
	if err != nil {
		t.Fatal(err)
	}
	check("ReadPartitions of 1000 partitions after the end", read(10), tail)
}
