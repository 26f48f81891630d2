package sqlitestore_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
		page, _, err := s.ReadPartitions(t.Context(), []store.PartitionCursor{{Partition: p}}, store.MaxReadLimit)
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
