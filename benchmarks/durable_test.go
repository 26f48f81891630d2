package benchmarks_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
	"github.com/ncore-io/event/store/sqlitestore"
)

// Durable benchmarks, on SQLite (synchronous=FULL, WAL) and PostgreSQL
// (fsync and synchronous_commit on), with ~200-byte JSON payloads:
//
//   - DurablePublish: 16 goroutines publishing at once, one event per call
//     (single) or 100 per call (batch100): ours Publish / PublishBatch,
//     Watermill's SQL publisher with 1 or 100 messages per Publish, and raw
//     driver loops committing one transaction per event or per 100 events
//     into our event table;
//   - PublishTx: one caller transaction with 100 events (one op): ours
//     PublishTx ×100, 100 plain INSERTs, and Watermill's SQL publisher on
//     the transaction ×100;
//   - Backlog: a durable subscription catching up on a stored backlog,
//     ours vs Watermill's SQL subscriber (1000 per batch);
//   - Replay: every stored event decoded in order, ours Replay vs a raw
//     query loop with encoding/json;
//   - DurableLatency: publish-to-handler latency of a durable subscription
//     at light load, as p50 and p99.
//
// Every benchmark counts what it stored or handled and fails unless each
// event is there exactly once.

const (
	publishers = 16  // concurrent durable publishers
	batchSize  = 100 // events per batched call
	wmTopic    = topic
	wmTable    = `"watermill_` + wmTopic + `"`
)

// openSQLite opens our store on a new file and checks it commits with
// synchronous=FULL, the default (so the benchmarks need neither name of the
// option that sets it).
func openSQLite(b *testing.B, path string) *sqlitestore.Store {
	b.Helper()
	s, err := sqlitestore.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	var mode int
	if err := s.DB().QueryRow("PRAGMA synchronous").Scan(&mode); err != nil {
		b.Fatal(err)
	}
	if mode != 2 {
		b.Fatalf("sqlite synchronous = %d, want 2 (FULL)", mode)
	}
	return s
}

// rawSQLite opens the file as the library's writer does, for the raw
// baselines: WAL, synchronous=FULL, one connection, BEGIN IMMEDIATE.
func rawSQLite(b *testing.B, path string) *sql.DB {
	b.Helper()
	db, err := sql.Open("sqlite", path+"?"+url.Values{
		"_pragma": {"busy_timeout(5000)", "journal_mode(WAL)", "synchronous(FULL)"},
		"_txlock": {"immediate"},
	}.Encode())
	if err != nil {
		b.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	b.Cleanup(func() { db.Close() })
	return db
}

func openPG(b *testing.B, dsn string) *pgstore.Store {
	b.Helper()
	s, err := pgstore.Open(context.Background(), dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// rawPG is a pgx pool with a connection for every publisher.
func rawPG(b *testing.B, dsn string) *pgxpool.Pool {
	b.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = publishers + 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// stdPG is a database/sql handle through pgx's stdlib driver, which
// Watermill's SQL Pub/Sub takes.
func stdPG(b *testing.B, dsn string) *sql.DB {
	b.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

func newBus(b *testing.B, s store.Store) *event.Bus[Registered] {
	b.Helper()
	bus, err := event.New[Registered](event.WithStore(s))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := bus.Close(context.Background()); err != nil {
			b.Error(err)
		}
	})
	return bus
}

// wmPublisher is Watermill's SQL publisher on db; its schema is created
// up front with one message numbered -1, which the checks leave out.
func wmPublisher(b *testing.B, db *sql.DB) *wsql.Publisher {
	b.Helper()
	pub, err := wsql.NewPublisher(wsql.BeginnerFromStdSQL(db), wsql.PublisherConfig{
		SchemaAdapter: wsql.DefaultPostgreSQLSchema{}, AutoInitializeSchema: true,
	}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pub.Close() })
	if err := pub.Publish(wmTopic, wmMessage(b, -1)); err != nil {
		b.Fatal(err)
	}
	return pub
}

func wmMessage(b *testing.B, n int) *message.Message {
	return message.NewMessage(watermill.NewUUID(), registeredJSON(b, n))
}

// parallel runs f(0..b.N-1) on publishers goroutines.
func parallel(b *testing.B, f func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				if err := f(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// expectStored fails b unless query, which returns a count of rows and a
// count of distinct event numbers n >= 0, finds want of each.
func expectStored(b *testing.B, q func(dst ...any) error, want int) {
	b.Helper()
	var rows, distinct int
	if err := q(&rows, &distinct); err != nil {
		b.Fatal(err)
	}
	if rows != want || distinct != want {
		b.Fatalf("stored %d events (%d distinct), want %d", rows, distinct, want)
	}
}

const (
	sqliteCount = `SELECT count(*), count(DISTINCT json_extract(CAST(payload AS TEXT), '$.n')) FROM event_log`
	pgCount     = `SELECT count(*), count(DISTINCT convert_from(payload, 'UTF8')::jsonb->>'n') FROM event.events`
	wmCount     = `SELECT count(*), count(DISTINCT payload->>'n') FROM ` + wmTable + ` WHERE (payload->>'n')::int >= 0`

	// The raw inserts fill in the partition as the stores do (see
	// store.Partition): the stores' logs require it.
	sqliteInsert = `INSERT INTO event_log (id, topic, kind, aggregate_id, version, time_us, metadata, payload_type, content_type, payload, part)
VALUES (?, 'user.registered', 'domain', NULL, 0, ?, NULL, 'benchmarks_test.Registered', 'application/json', ?, ?)`
	pgInsert = `INSERT INTO event.events (id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload, part)
VALUES ($1, 'user.registered', 'domain', '', 0, $2, NULL, 'benchmarks_test.Registered', 'application/json', $3, $4)`
)

// rawID is the ID of the i'th event of a raw insert, and part its partition.
func rawID(i int) (string, int) {
	id := "e" + strconv.Itoa(i)
	return id, store.Partition("", id, store.DefaultPartitions)
}

func sqliteRow(db *sql.DB, q string) func(...any) error {
	return func(dst ...any) error { return db.QueryRow(q).Scan(dst...) }
}

func pgRow(pool *pgxpool.Pool, q string) func(...any) error {
	return func(dst ...any) error { return pool.QueryRow(context.Background(), q).Scan(dst...) }
}

func stdRow(db *sql.DB, q string) func(...any) error {
	return func(dst ...any) error { return db.QueryRow(q).Scan(dst...) }
}

// messages builds a batch of events numbered from first.
func messages(first, n int) []event.Message[Registered] {
	ms := make([]event.Message[Registered], n)
	for k := range ms {
		ms[k] = event.Message[Registered]{Topic: topic, Payload: registered(first + k)}
	}
	return ms
}

func BenchmarkDurablePublishSQLite(b *testing.B) {
	ctx := context.Background()
	b.Run("single/ours", func(b *testing.B) {
		b.ReportAllocs()
		s := openSQLite(b, sqlitePath(b))
		bus := newBus(b, s)
		b.ResetTimer()
		parallel(b, func(i int) error { return bus.Publish(ctx, topic, registered(i)) })
		b.StopTimer()
		report(b, 1)
		expectStored(b, sqliteRow(s.DB(), sqliteCount), b.N)
	})
	b.Run("single/tx-per-event", func(b *testing.B) {
		b.ReportAllocs()
		path := sqlitePath(b)
		openSQLite(b, path).Close() // the same schema
		db := rawSQLite(b, path)
		ins, err := db.Prepare(sqliteInsert)
		if err != nil {
			b.Fatal(err)
		}
		defer ins.Close()
		b.ResetTimer()
		parallel(b, func(i int) error {
			p, err := json.Marshal(registered(i))
			if err != nil {
				return err
			}
			id, part := rawID(i)
			_, err = ins.ExecContext(ctx, id, time.Now().UnixMicro(), p, part)
			return err
		})
		b.StopTimer()
		report(b, 1)
		expectStored(b, sqliteRow(db, sqliteCount), b.N)
	})
	b.Run("batch100/ours", func(b *testing.B) {
		b.ReportAllocs()
		s := openSQLite(b, sqlitePath(b))
		bus := newBus(b, s)
		b.ResetTimer()
		parallel(b, func(i int) error { return bus.PublishBatch(ctx, messages(i*batchSize, batchSize)) })
		b.StopTimer()
		report(b, batchSize)
		expectStored(b, sqliteRow(s.DB(), sqliteCount), b.N*batchSize)
	})
	b.Run("batch100/tx-per-batch", func(b *testing.B) {
		b.ReportAllocs()
		path := sqlitePath(b)
		openSQLite(b, path).Close()
		db := rawSQLite(b, path)
		ins, err := db.Prepare(sqliteInsert)
		if err != nil {
			b.Fatal(err)
		}
		defer ins.Close()
		b.ResetTimer()
		parallel(b, func(i int) error { return sqliteInsertTx(ctx, db, ins, i*batchSize, batchSize) })
		b.StopTimer()
		report(b, batchSize)
		expectStored(b, sqliteRow(db, sqliteCount), b.N*batchSize)
	})
}

// sqliteInsertTx inserts n events numbered from first in one transaction.
func sqliteInsertTx(ctx context.Context, db *sql.DB, ins *sql.Stmt, first, n int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	st := tx.StmtContext(ctx, ins)
	for k := range n {
		p, err := json.Marshal(registered(first + k))
		if err != nil {
			return err
		}
		id, part := rawID(first + k)
		if _, err := st.ExecContext(ctx, id, time.Now().UnixMicro(), p, part); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func BenchmarkDurablePublishPostgres(b *testing.B) {
	ctx := context.Background()
	b.Run("single/ours", func(b *testing.B) {
		b.ReportAllocs()
		s := openPG(b, pgDSN(b))
		bus := newBus(b, s)
		b.ResetTimer()
		parallel(b, func(i int) error { return bus.Publish(ctx, topic, registered(i)) })
		b.StopTimer()
		report(b, 1)
		expectStored(b, pgRow(s.Pool(), pgCount), b.N)
	})
	b.Run("single/watermill-sql", func(b *testing.B) {
		b.ReportAllocs()
		db := stdPG(b, pgDSN(b))
		pub := wmPublisher(b, db)
		b.ResetTimer()
		parallel(b, func(i int) error { return pub.Publish(wmTopic, wmMessage(b, i)) })
		b.StopTimer()
		report(b, 1)
		expectStored(b, stdRow(db, wmCount), b.N)
	})
	b.Run("single/tx-per-event", func(b *testing.B) {
		b.ReportAllocs()
		dsn := pgDSN(b)
		openPG(b, dsn).Close() // the same schema
		pool := rawPG(b, dsn)
		b.ResetTimer()
		parallel(b, func(i int) error {
			p, err := json.Marshal(registered(i))
			if err != nil {
				return err
			}
			id, part := rawID(i)
			_, err = pool.Exec(ctx, pgInsert, id, time.Now(), p, part)
			return err
		})
		b.StopTimer()
		report(b, 1)
		expectStored(b, pgRow(pool, pgCount), b.N)
	})
	b.Run("batch100/ours", func(b *testing.B) {
		b.ReportAllocs()
		s := openPG(b, pgDSN(b))
		bus := newBus(b, s)
		b.ResetTimer()
		parallel(b, func(i int) error { return bus.PublishBatch(ctx, messages(i*batchSize, batchSize)) })
		b.StopTimer()
		report(b, batchSize)
		expectStored(b, pgRow(s.Pool(), pgCount), b.N*batchSize)
	})
	b.Run("batch100/watermill-sql", func(b *testing.B) {
		b.ReportAllocs()
		db := stdPG(b, pgDSN(b))
		pub := wmPublisher(b, db)
		b.ResetTimer()
		parallel(b, func(i int) error {
			ms := make([]*message.Message, batchSize)
			for k := range ms {
				ms[k] = wmMessage(b, i*batchSize+k)
			}
			return pub.Publish(wmTopic, ms...)
		})
		b.StopTimer()
		report(b, batchSize)
		expectStored(b, stdRow(db, wmCount), b.N*batchSize)
	})
	b.Run("batch100/tx-per-batch", func(b *testing.B) {
		b.ReportAllocs()
		dsn := pgDSN(b)
		openPG(b, dsn).Close()
		pool := rawPG(b, dsn)
		b.ResetTimer()
		parallel(b, func(i int) error {
			return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				var batch pgx.Batch
				for k := range batchSize {
					p, err := json.Marshal(registered(i*batchSize + k))
					if err != nil {
						return err
					}
					id, part := rawID(i*batchSize + k)
					batch.Queue(pgInsert, id, time.Now(), p, part)
				}
				return tx.SendBatch(ctx, &batch).Close()
			})
		})
		b.StopTimer()
		report(b, batchSize)
		expectStored(b, pgRow(pool, pgCount), b.N*batchSize)
	})
}

// One op of the PublishTx benchmarks is one caller transaction that
// stores 100 events, from one goroutine.

func BenchmarkPublishTxSQLite(b *testing.B) {
	ctx := context.Background()
	b.Run("ours", func(b *testing.B) {
		b.ReportAllocs()
		s := openSQLite(b, sqlitePath(b))
		bus := newBus(b, s)
		b.ResetTimer()
		for i := range b.N {
			tx, err := s.DB().BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			for k := range batchSize {
				if err := bus.PublishTx(ctx, tx, topic, registered(i*batchSize+k)); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		report(b, batchSize)
		expectStored(b, sqliteRow(s.DB(), sqliteCount), b.N*batchSize)
	})
	b.Run("raw-insert", func(b *testing.B) {
		b.ReportAllocs()
		s := openSQLite(b, sqlitePath(b)) // the same handle the outbox uses
		ins, err := s.DB().Prepare(sqliteInsert)
		if err != nil {
			b.Fatal(err)
		}
		defer ins.Close()
		b.ResetTimer()
		for i := range b.N {
			if err := sqliteInsertTx(ctx, s.DB(), ins, i*batchSize, batchSize); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		report(b, batchSize)
		expectStored(b, sqliteRow(s.DB(), sqliteCount), b.N*batchSize)
	})
}

func BenchmarkPublishTxPostgres(b *testing.B) {
	ctx := context.Background()
	b.Run("ours", func(b *testing.B) {
		b.ReportAllocs()
		s := openPG(b, pgDSN(b))
		bus := newBus(b, s)
		b.ResetTimer()
		for i := range b.N {
			err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
				for k := range batchSize {
					if err := bus.PublishTx(ctx, tx, topic, registered(i*batchSize+k)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		report(b, batchSize)
		expectStored(b, pgRow(s.Pool(), pgCount), b.N*batchSize)
	})
	b.Run("raw-insert", func(b *testing.B) {
		b.ReportAllocs()
		s := openPG(b, pgDSN(b)) // the same pool the outbox uses
		b.ResetTimer()
		for i := range b.N {
			err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
				for k := range batchSize {
					p, err := json.Marshal(registered(i*batchSize + k))
					if err != nil {
						return err
					}
					id, part := rawID(i*batchSize + k)
					if _, err := tx.Exec(ctx, pgInsert, id, time.Now(), p, part); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		report(b, batchSize)
		expectStored(b, pgRow(s.Pool(), pgCount), b.N*batchSize)
	})
	b.Run("watermill-sql", func(b *testing.B) {
		b.ReportAllocs()
		db := stdPG(b, pgDSN(b))
		wmPublisher(b, db) // creates the table
		b.ResetTimer()
		for i := range b.N {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			pub, err := wsql.NewPublisher(wsql.TxFromStdSQL(tx), wsql.PublisherConfig{SchemaAdapter: wsql.DefaultPostgreSQLSchema{}}, watermill.NopLogger{})
			if err != nil {
				b.Fatal(err)
			}
			for k := range batchSize {
				if err := pub.Publish(wmTopic, wmMessage(b, i*batchSize+k)); err != nil {
					b.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		report(b, batchSize)
		expectStored(b, stdRow(db, wmCount), b.N*batchSize)
	})
}

// fillOurs stores n events through the bus, 1000 per batch.
func fillOurs(b *testing.B, s store.Store, n int) {
	b.Helper()
	bus, err := event.New[Registered](event.WithStore(s))
	if err != nil {
		b.Fatal(err)
	}
	defer bus.Close(context.Background())
	for i := 0; i < n; i += 1000 {
		if err := bus.PublishBatch(context.Background(), messages(i, min(1000, n-i))); err != nil {
			b.Fatal(err)
		}
	}
}

// One op of the Backlog and Replay benchmarks handles the whole backlog,
// EVENT_BENCH_BACKLOG or EVENT_BENCH_REPLAY events.

func BenchmarkBacklogPostgres(b *testing.B) {
	ctx := context.Background()
	b.Run("ours", func(b *testing.B) {
		size := envSize(b, "EVENT_BENCH_BACKLOG", 100_000)
		b.ReportAllocs()
		s := openPG(b, pgDSN(b))
		fillOurs(b, s, size)
		round := 0
		for b.Loop() {
			round++
			tr := newTracker(size)
			bus, err := event.New[Registered](event.WithStore(s))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := event.Subscribe(bus, topic, func(_ context.Context, ev event.Event[Registered]) error {
				tr.hit(ev.Payload.N)
				return nil
			}, event.Durable("drain-"+strconv.Itoa(round))); err != nil {
				b.Fatal(err)
			}
			tr.wait(b, 5*time.Minute)
			if err := bus.Close(ctx); err != nil {
				b.Fatal(err)
			}
			tr.check(b)
		}
		report(b, size)
	})
	b.Run("watermill-sql", func(b *testing.B) {
		size := envSize(b, "EVENT_BENCH_BACKLOG", 100_000)
		b.ReportAllocs()
		db := stdPG(b, pgDSN(b))
		pub := wmPublisher(b, db)
		for i := 0; i < size; i += 1000 {
			ms := make([]*message.Message, min(1000, size-i))
			for k := range ms {
				ms[k] = wmMessage(b, i+k)
			}
			if err := pub.Publish(wmTopic, ms...); err != nil {
				b.Fatal(err)
			}
		}
		round := 0
		for b.Loop() {
			round++
			tr := newTracker(size)
			sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(db), wsql.SubscriberConfig{
				ConsumerGroup:    "drain-" + strconv.Itoa(round),
				SchemaAdapter:    wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: 1000},
				OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
				InitializeSchema: true,
			}, watermill.NopLogger{})
			if err != nil {
				b.Fatal(err)
			}
			msgs, err := sub.Subscribe(ctx, wmTopic)
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				for m := range msgs {
					var p Registered
					if err := json.Unmarshal(m.Payload, &p); err != nil {
						b.Error(err)
					}
					if p.N >= 0 { // not the schema's warm-up message
						tr.hit(p.N)
					}
					m.Ack()
				}
			})
			tr.wait(b, 5*time.Minute)
			if err := sub.Close(); err != nil {
				b.Fatal(err)
			}
			wg.Wait()
			tr.check(b)
		}
		report(b, size)
	})
}

func BenchmarkReplayPostgres(b *testing.B) {
	ctx := context.Background()
	b.Run("ours", func(b *testing.B) {
		size := envSize(b, "EVENT_BENCH_REPLAY", 100_000)
		b.ReportAllocs()
		s := openPG(b, pgDSN(b))
		fillOurs(b, s, size)
		bus := newBus(b, s)
		for b.Loop() {
			replayOurs(b, bus, size)
		}
		report(b, size)
	})
	b.Run("raw-pgx", func(b *testing.B) {
		size := envSize(b, "EVENT_BENCH_REPLAY", 100_000)
		b.ReportAllocs()
		s := openPG(b, pgDSN(b))
		fillOurs(b, s, size)
		for b.Loop() {
			tr := newTracker(size)
			rows, err := s.Pool().Query(ctx, `SELECT position, id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload
FROM event.events ORDER BY txid, position`)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				var r store.Record
				var meta []byte
				if err := rows.Scan(&r.Position, &r.ID, &r.Topic, &r.Kind, &r.AggregateID, &r.Version, &r.Time, &meta, &r.PayloadType, &r.ContentType, &r.Payload); err != nil {
					b.Fatal(err)
				}
				var p Registered
				if err := json.Unmarshal(r.Payload, &p); err != nil {
					b.Fatal(err)
				}
				tr.hit(p.N)
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			tr.check(b)
		}
		report(b, size)
	})
}

func BenchmarkReplaySQLite(b *testing.B) {
	ctx := context.Background()
	b.Run("ours", func(b *testing.B) {
		size := envSize(b, "EVENT_BENCH_REPLAY", 100_000)
		b.ReportAllocs()
		s := openSQLite(b, sqlitePath(b))
		fillOurs(b, s, size)
		bus := newBus(b, s)
		for b.Loop() {
			replayOurs(b, bus, size)
		}
		report(b, size)
	})
	b.Run("raw-sql", func(b *testing.B) {
		size := envSize(b, "EVENT_BENCH_REPLAY", 100_000)
		b.ReportAllocs()
		path := sqlitePath(b)
		fillOurs(b, openSQLite(b, path), size)
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_query_only=1")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		for b.Loop() {
			tr := newTracker(size)
			rows, err := db.QueryContext(ctx, `SELECT position, id, topic, kind, aggregate_id, version, time_us, metadata, payload_type, content_type, payload
FROM event_log ORDER BY position`)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				var r store.Record
				var agg, meta sql.NullString
				var us int64
				if err := rows.Scan(&r.Position, &r.ID, &r.Topic, &r.Kind, &agg, &r.Version, &us, &meta, &r.PayloadType, &r.ContentType, &r.Payload); err != nil {
					b.Fatal(err)
				}
				r.AggregateID, r.Time = agg.String, time.UnixMicro(us)
				var p Registered
				if err := json.Unmarshal(r.Payload, &p); err != nil {
					b.Fatal(err)
				}
				tr.hit(p.N)
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			rows.Close()
			tr.check(b)
		}
		report(b, size)
	})
}

func replayOurs(b *testing.B, bus *event.Bus[Registered], size int) {
	tr := newTracker(size)
	n, err := event.Replay(context.Background(), bus, store.Query{}, func(_ context.Context, ev event.Event[Registered]) error {
		tr.hit(ev.Payload.N)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	if n != size {
		b.Fatalf("replayed %d events, want %d", n, size)
	}
	tr.check(b)
}

// BenchmarkDurableLatency publishes one event per op, every millisecond
// from one goroutine, to a durable subscription, and reports the p50 and
// p99 of the time from the start of Publish to the handler.
func BenchmarkDurableLatency(b *testing.B) {
	for _, be := range []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"sqlite", func(b *testing.B) store.Store { return openSQLite(b, sqlitePath(b)) }},
		{"postgres", func(b *testing.B) store.Store { return openPG(b, pgDSN(b)) }},
	} {
		b.Run(be.name+"/ours", func(b *testing.B) {
			b.ReportAllocs()
			bus := newBus(b, be.open(b))
			var mu sync.Mutex
			starts := map[int]time.Time{}
			var lat []time.Duration
			var handled atomic.Int64
			dups := 0
			if _, err := event.Subscribe(bus, topic, func(_ context.Context, ev event.Event[Registered]) error {
				now := time.Now()
				mu.Lock()
				if t, ok := starts[ev.Payload.N]; ok {
					lat = append(lat, now.Sub(t))
					delete(starts, ev.Payload.N)
				} else {
					dups++
				}
				mu.Unlock()
				handled.Add(1)
				return nil
			}, event.Durable("latency")); err != nil {
				b.Fatal(err)
			}
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			ctx := context.Background()
			n := 0
			for b.Loop() {
				<-tick.C
				mu.Lock()
				starts[n] = time.Now()
				mu.Unlock()
				if err := bus.Publish(ctx, topic, registered(n)); err != nil {
					b.Fatal(err)
				}
				n++
			}
			deadline := time.Now().Add(time.Minute)
			for handled.Load() < int64(n) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(lat) != n || dups != 0 {
				b.Fatalf("handled %d of %d events, %d unknown or repeated", len(lat), n, dups)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			report(b, 1)
		})
	}
}
