//go:build unix

package pgstore_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
)

// TestReadPartitionsAfterCrash checks that the cursors ReadPartitions
// returns for partitions read to their end hold across a crash of the
// server. After a crash PostgreSQL hands out again the transaction IDs
// that no WAL on disk mentions: here that of an aborted transaction, whose
// abort record the WAL writer, held up, never wrote. A cursor at the read
// horizon, past that ID, kept by a reader that outlives the crash, would
// pass over the records of the transaction that gets the ID next.
func TestReadPartitionsAfterCrash(t *testing.T) {
	ctx := t.Context()
	srv := pgtest.NewServer(t)
	dsn := srv.DSN()
	s, err := pgstore.Open(ctx, dsn, pgstore.WithPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(ctx, []store.Record{rec("before")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Claim(ctx, "g", "m", time.Minute); err != nil { // builds the partition index
		t.Fatal(err)
	}
	from := []store.PartitionCursor{{Partition: 0}}
	recs, err := s.ReadPartitions(ctx, from, 10)
	if err != nil || len(recs) != 1 {
		t.Fatalf("first read: %d records, %v", len(recs), err)
	}

	var walWriter int
	if err := s.Pool().QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'").Scan(&walWriter); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(walWriter, syscall.SIGSTOP); err != nil {
		t.Skipf("cannot hold up the WAL writer (pid %d): %v", walWriter, err)
	}
	defer syscall.Kill(walWriter, syscall.SIGCONT) // should the test end before the crash
	// A transaction that takes an ID and ends: its abort record waits in
	// the WAL buffers for the WAL writer.
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var taken uint64
	if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&taken); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = s.ReadPartitions(ctx, from, 10)
	if err != nil {
		t.Fatal(err)
	}
	// The crash: the WAL writer dies with the rest, the buffers unwritten.
	if err := syscall.Kill(walWriter, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(ctx, nil); err != nil {
		t.Fatal(err)
	}

	var reused bool
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := s.Append(ctx, []store.Record{rec("after")})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("append after the crash: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Pool().QueryRow(ctx, "SELECT txid::text::bigint <= $1 FROM event.events WHERE id = 'after'", taken).Scan(&reused); err != nil {
		t.Fatal(err)
	}
	recs, err = s.ReadPartitions(ctx, from, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != "after" {
		t.Fatalf("read after the crash from the cursor of before: %d records (the append after it took a transaction ID taken before: %v); want the one appended after", len(recs), reused)
	}
	if !reused {
		t.Log("the append after the crash did not get a transaction ID taken before it, so this run proved nothing")
	}
}
