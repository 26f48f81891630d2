package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
)

// burnedXIDs is how many transaction IDs the source cluster of
// TestDumpAndRestore uses up before the store is made, so that its IDs are
// well above those of a cluster that initdb has just made.
const burnedXIDs = 20_000

// TestDumpAndRestore dumps a store's database with pg_dump from a cluster
// that has used many transaction IDs and restores it into a new cluster,
// whose IDs start again far lower. A reader and a consumer group that had
// read part of the log, and saved where they were, go on from there after
// the restore: they must see the rest of the old events and every event
// appended after the restore, in order, once each; a read from the start
// must give the old events, then the new ones. A second group had read
// the whole log and then saved the read horizon, past the last event, as
// its checkpoints: it must see the new events. The cursor of a record
// appended to the source after the dump, and so ahead of anything
// restored, is refused rather than read from.
func TestDumpAndRestore(t *testing.T) {
	ctx := t.Context()
	const parts = 4
	const group, idle, reader = "g", "idle", "reader"

	srcSrv := pgtest.NewServer(t)
	srcDSN := srcSrv.DSN()
	srcPool := newPool(t, srcDSN)
	burnXIDs(t, srcPool, burnedXIDs)
	srcLog := &logBuffer{}
	src, err := pgstore.New(ctx, srcPool, pgstore.WithPartitions(parts), pgstore.WithLogger(srcLog.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var old []string
	for b := range 6 {
		var batch []store.Record
		for i := range 5 {
			id := fmt.Sprintf("old-%02d", 5*b+i)
			r := rec(id)
			if i%2 == 0 {
				r.AggregateID = fmt.Sprintf("agg-%d", i)
			}
			batch = append(batch, r)
			old = append(old, id)
		}
		if err := src.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	waitReadable(t, src, len(old))

	// The reader reads 12 events and saves its cursor.
	page, cur, err := src.Read(ctx, store.Query{Limit: 12})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(page); !slices.Equal(got, old[:12]) {
		t.Fatalf("source: first 12 events read %v, want %v", got, old[:12])
	}
	if err := src.SetCheckpoint(ctx, reader, cur); err != nil {
		t.Fatal(err)
	}

	// A member of the group handles 10 events, commits its partitions'
	// checkpoints and leaves, as a process that stops does.
	a, err := src.Claim(ctx, group, "m1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Leases) != parts {
		t.Fatalf("source: the only member holds %d partitions, want %d", len(a.Leases), parts)
	}
	from := make([]store.PartitionCursor, len(a.Leases))
	for i, l := range a.Leases {
		from[i] = store.PartitionCursor{Partition: l.Partition, After: l.Cursor}
	}
	recs, err := src.ReadPartitions(ctx, from, 10)
	if err != nil {
		t.Fatal(err)
	}
	handled := ids(recs)
	if !slices.Equal(handled, old[:10]) {
		t.Fatalf("source: the group's first 10 events %v, want %v", handled, old[:10])
	}
	cps := make([]store.Checkpoint, len(a.Leases))
	for i, l := range a.Leases {
		cps[i] = store.Checkpoint{Partition: l.Partition, Token: l.Token, Cursor: from[i].After}
	}
	if err := src.Commit(ctx, group, "m1", cps...); err != nil {
		t.Fatal(err)
	}
	if err := src.Release(ctx, group, "m1"); err != nil {
		t.Fatal(err)
	}

	// The idle group reads everything; more transactions pass, and it
	// saves checkpoints at the read horizon, after the last event, as
	// members did when ReadPartitions moved partitions read to their end
	// up to the horizon.
	a, err = src.Claim(ctx, idle, "i1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	idleFrom := make([]store.PartitionCursor, len(a.Leases))
	for i, l := range a.Leases {
		idleFrom[i] = store.PartitionCursor{Partition: l.Partition, After: l.Cursor}
	}
	if got := readPartitions(t, src, idleFrom); !slices.Equal(got, old) {
		t.Fatalf("source: the idle group reads %v, want %v", got, old)
	}
	burnXIDs(t, srcPool, 1000)
	if got := readPartitions(t, src, idleFrom); len(got) != 0 {
		t.Fatalf("source: the idle group read %v at the end of the log", got)
	}
	horizon, err := pgstore.HorizonCursor(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	cps = cps[:0]
	for _, l := range a.Leases {
		cps = append(cps, store.Checkpoint{Partition: l.Partition, Token: l.Token, Cursor: horizon})
	}
	if err := src.Commit(ctx, idle, "i1", cps...); err != nil {
		t.Fatal(err)
	}
	if err := src.Release(ctx, idle, "i1"); err != nil {
		t.Fatal(err)
	}

	dump := runTool(t, srcSrv, nil, "pg_dump", "--format=custom", "--dbname="+srcDSN)
	// A record appended to the source after the dump, and read there: its
	// cursor is ahead of anything restored.
	burnXIDs(t, srcPool, 1000)
	if err := src.Append(ctx, []store.Record{rec("late")}); err != nil {
		t.Fatal(err)
	}
	waitReadable(t, src, len(old)+1)
	page, _, err = src.Read(ctx, store.Query{Limit: len(old) + 1})
	if err != nil || len(page) != len(old)+1 || page[len(old)].ID != "late" {
		t.Fatalf("source: read after the dump: %v, %v; want the old events and the late one", ids(page), err)
	}
	ahead := page[len(old)].Cursor
	src.Close()
	if srcLog.String() != "" {
		t.Errorf("source: a store of a cluster that was never restored logged:\n%s", srcLog)
	}

	dstSrv := pgtest.NewServer(t)
	dstDSN := dstSrv.DSN()
	runTool(t, dstSrv, dump, "pg_restore", "--exit-on-error", "--no-owner", "--dbname="+dstDSN)
	dstPool := newPool(t, dstDSN)

	// The premise: the new cluster's transaction IDs are below the
	// stored ones, so that a plain transaction ID would sort new events
	// before the old ones.
	var behind bool
	if err := dstPool.QueryRow(ctx, "SELECT pg_current_xact_id() < (SELECT max(txid) FROM event.events)").Scan(&behind); err != nil {
		t.Fatal(err)
	}
	if !behind {
		t.Fatal("the new cluster's transaction IDs are not below the restored ones; burn more on the source")
	}

	dstLog := &logBuffer{}
	dst, err := pgstore.New(ctx, dstPool, pgstore.WithLogger(dstLog.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if !strings.Contains(dstLog.String(), "raised the offset") {
		t.Errorf("the first store on the restored database did not log that it raised the offset; it logged:\n%s", dstLog)
	}
	again := &logBuffer{}
	if s, err := pgstore.New(ctx, dstPool, pgstore.WithLogger(again.logger())); err != nil {
		t.Fatal(err)
	} else {
		s.Close()
	}
	if again.String() != "" {
		t.Errorf("the second store on the restored database logged:\n%s", again)
	}
	var fresh []string
	for b := range 3 {
		var batch []store.Record
		for i := range 3 {
			id := fmt.Sprintf("new-%02d", 3*b+i)
			r := rec(id)
			if i == 0 {
				r.AggregateID = "agg-0" // on from its restored version
			}
			batch = append(batch, r)
			fresh = append(fresh, id)
		}
		if err := dst.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	all := slices.Concat(old, fresh)
	waitReadable(t, dst, len(all))

	if got, _ := readIDs(t, dst, store.Query{Limit: 7}); !slices.Equal(got, all) {
		t.Errorf("after the restore, a read from the start gives\n%v\nwant\n%v", got, all)
	}

	saved, err := dst.Checkpoint(ctx, reader)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := readIDs(t, dst, store.Query{After: saved, Limit: 5}); !slices.Equal(got, all[12:]) {
		t.Errorf("after the restore, the reader resuming from its checkpoint reads\n%v\nwant\n%v", got, all[12:])
	}

	a, err = dst.Claim(ctx, group, "m2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Leases) != parts {
		t.Fatalf("after the restore, the only member holds %d partitions, want %d", len(a.Leases), parts)
	}
	from = make([]store.PartitionCursor, len(a.Leases))
	for i, l := range a.Leases {
		from[i] = store.PartitionCursor{Partition: l.Partition, After: l.Cursor}
	}
	if got := readPartitions(t, dst, from); !slices.Equal(got, all[10:]) {
		t.Errorf("after the restore, the group resuming from its checkpoints reads\n%v\nwant\n%v", got, all[10:])
	}

	a, err = dst.Claim(ctx, idle, "i2", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	from = from[:0]
	for _, l := range a.Leases {
		from = append(from, store.PartitionCursor{Partition: l.Partition, After: l.Cursor})
	}
	if got := readPartitions(t, dst, from); !slices.Equal(got, fresh) {
		t.Errorf("after the restore, the idle group resuming from its checkpoints reads\n%v\nwant\n%v", got, fresh)
	}

	if _, _, err := dst.Read(ctx, store.Query{After: ahead}); !errors.Is(err, store.ErrInvalidCursor) || !strings.Contains(err.Error(), "ahead") {
		t.Errorf("after the restore, Read after a cursor ahead of the restored log: %v, want an ErrInvalidCursor that says it is ahead", err)
	}
	if _, err := dst.ReadPartitions(ctx, []store.PartitionCursor{{Partition: 0, After: ahead}}, 10); !errors.Is(err, store.ErrInvalidCursor) || !strings.Contains(err.Error(), "ahead") {
		t.Errorf("after the restore, ReadPartitions after a cursor ahead of the restored log: %v, want an ErrInvalidCursor that says it is ahead", err)
	}
}

// waitReadable waits until a read of s from the start gives n records:
// until no transaction holds the read horizon below those appended.
func waitReadable(t *testing.T, s *pgstore.Store, n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("a read from the start gives %d records", n), func() bool {
		got, _ := readIDs(t, s, store.Query{})
		return len(got) >= n
	})
}

// readPartitions reads the partitions of from, 4 records at a time, until
// a read returns none, moving from's cursors on, and returns the IDs read.
func readPartitions(t *testing.T, g store.Grouper, from []store.PartitionCursor) []string {
	t.Helper()
	var got []string
	for {
		recs, err := g.ReadPartitions(t.Context(), from, 4)
		if err != nil {
			t.Fatalf("ReadPartitions: %v", err)
		}
		if len(recs) == 0 {
			return got
		}
		got = append(got, ids(recs)...)
		if len(got) > 1000 {
			t.Fatalf("ReadPartitions does not come to an end: %d records read", len(got))
		}
	}
}

// logBuffer collects what a store logs, for tests to look at.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logger logs at Info and above into b.
func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// TestMigrateFromVersion3 migrates a schema of version 3, whose order is
// the plain transaction ID, and whose keys are ahead of the cluster's
// transaction IDs, as they are when it was restored into another cluster
// before this version: New must migrate it, keep its records in order and
// sort new ones after them.
func TestMigrateFromVersion3(t *testing.T) {
	ctx := t.Context()
	pool := newPool(t, pgtest.DSN(t))
	if err := pgstore.MigrateTo(ctx, pool, 3); err != nil {
		t.Fatal(err)
	}
	txidDefault := func() string {
		t.Helper()
		var d string
		if err := pool.QueryRow(ctx, "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef AS d JOIN pg_attribute AS a ON a.attrelid = d.adrelid AND a.attnum = d.adnum "+
			"WHERE d.adrelid = 'event.events'::regclass AND a.attname = 'txid'").Scan(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := txidDefault(); d != "pg_current_xact_id()" {
		t.Fatalf("version 3: the txid column defaults to %s, want pg_current_xact_id()", d)
	}
	var old []string
	for i := range 3 {
		id := fmt.Sprintf("v3-%d", i)
		if _, err := pool.Exec(ctx, "INSERT INTO event.events (id, topic, kind, aggregate_id, version, time, payload_type, content_type, payload, part) "+
			"VALUES ($1, 'test.created', 'domain', '', 0, $2, '', 'application/json', '{}', 0)", id, t0); err != nil {
			t.Fatal(err)
		}
		old = append(old, id)
	}
	if _, err := pool.Exec(ctx, "UPDATE event.events SET txid = (txid::text::bigint + 1000000)::text::xid8"); err != nil {
		t.Fatal(err)
	}

	log := &logBuffer{}
	s, err := pgstore.New(ctx, pool, pgstore.WithLogger(log.logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v string
	if err := pool.QueryRow(ctx, "SELECT value FROM event.meta WHERE key = 'schema_version'").Scan(&v); err != nil || v != fmt.Sprint(pgstore.SchemaVersion) {
		t.Fatalf("after New, schema version %q (%v), want %d", v, err, pgstore.SchemaVersion)
	}
	if d, want := txidDefault(), "event.log_xid(pg_current_xact_id())"; d != want {
		t.Errorf("after New, the txid column defaults to %s, want %s", d, want)
	}
	if !strings.Contains(log.String(), "raised the offset") {
		t.Errorf("New did not log that it raised the offset over keys ahead of the cluster's; it logged:\n%s", log)
	}
	if err := s.Append(ctx, []store.Record{rec("v4-0"), rec("v4-1")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []store.Record{rec("v4-2")}); err != nil {
		t.Fatal(err)
	}
	want := append(old, "v4-0", "v4-1", "v4-2")
	if got, _ := readIDs(t, s, store.Query{}); !slices.Equal(got, want) {
		t.Errorf("after the migration, a read from the start gives %v, want %v", got, want)
	}
}

// burnXIDs uses up n transaction IDs of pool's cluster: each
// subtransaction that writes takes one.
func burnXIDs(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := t.Context()
	var before, after uint64
	if err := pool.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE burn (x int);
DO $$ BEGIN
	FOR i IN 1..%d LOOP
		BEGIN INSERT INTO burn VALUES (i); EXCEPTION WHEN OTHERS THEN RAISE; END;
	END LOOP;
END $$;
DROP TABLE burn`, n)); err != nil {
		t.Fatalf("burn transaction IDs: %v", err)
	}
	if err := pool.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after-before < uint64(n) {
		t.Fatalf("burning %d transaction IDs moved the next one from %d to %d only", n, before, after)
	}
}

// runTool runs the PostgreSQL program name of srv with args and stdin, and
// returns what it wrote to its standard output.
func runTool(t *testing.T, srv *pgtest.Server, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := srv.Command(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, stderr.Bytes())
	}
	return stdout.Bytes()
}

func ids(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}
