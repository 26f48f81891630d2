package pgstore_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
)

// appenders is the number of goroutines appending at once.
const appenders = 16

// userRegistered is the benchmark payload, about 200 bytes of JSON.
type userRegistered struct {
	UserID    string    `json:"user_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Plan      string    `json:"plan"`
	Referrer  string    `json:"referrer"`
	Locale    string    `json:"locale"`
	Marketing bool      `json:"marketing"`
	At        time.Time `json:"at"`
}

func benchPayload(i int64) []byte {
	b, _ := json.Marshal(userRegistered{
		UserID: fmt.Sprintf("usr_%012d", i), Email: fmt.Sprintf("user%d@example.com", i), Name: "Ada Lovelace",
		Plan: "pro-annual", Referrer: "newsletter-2025-01", Locale: "en-GB", Marketing: true,
		At: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	})
	return b
}

func benchRecord(i int64) store.Record {
	return store.Record{
		ID: fmt.Sprintf("evt-%012d", i), Topic: "user.registered", Kind: store.KindDomain,
		AggregateID: fmt.Sprintf("usr_%012d", i), Time: time.Now(),
		PayloadType: "bench.userRegistered", ContentType: "application/json", Payload: benchPayload(i),
	}
}

// openBench opens a store on a fresh database with a pool large enough for
// every appender to hold a connection.
func openBench(b *testing.B) *pgstore.Store {
	b.Helper()
	s, err := pgstore.Open(b.Context(), benchDSN(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// benchDSN returns the DSN of a fresh database, with a pool large enough
// for every appender to hold a connection.
func benchDSN(b *testing.B) string {
	b.Helper()
	dsn := pgtest.DSN(b)
	if strings.Contains(dsn, "://") {
		if strings.Contains(dsn, "?") {
			return dsn + "&pool_max_conns=" + fmt.Sprint(appenders+4)
		}
		return dsn + "?pool_max_conns=" + fmt.Sprint(appenders+4)
	}
	return dsn + fmt.Sprintf(" pool_max_conns=%d", appenders+4)
}

func parallelism() int { return (appenders + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0) }

func reportRate(b *testing.B, events int) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppend compares durable appends of one event per call from 16
// goroutines: the baseline is one autocommitted INSERT per event through
// raw pgx into the same table, so one commit (and WAL flush) per event;
// Append shares each commit among the callers waiting at the time. Each
// runs with events of an aggregate (a new one per event, so every append
// also creates its aggregate's version row) and with events of none.
func BenchmarkAppend(b *testing.B) {
	for _, agg := range []bool{true, false} {
		suffix := "/aggregate"
		if !agg {
			suffix = "/no-aggregate"
		}
		record := func(i int64) store.Record {
			r := benchRecord(i)
			if !agg {
				r.AggregateID = ""
			}
			return r
		}
		b.Run("baseline=pgx-insert-per-event"+suffix, func(b *testing.B) {
			s := openBench(b)
			pool := s.Pool()
			ctx := b.Context()
			const sql = `INSERT INTO event.events (id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload, part)
VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8, $9, $10)`
			var seq atomic.Int64
			b.SetParallelism(parallelism())
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r := record(seq.Add(1))
					version := 0
					if agg {
						version = 1
					}
					part := store.Partition(r.AggregateID, r.ID, store.DefaultPartitions)
					if _, err := pool.Exec(ctx, sql, r.ID, r.Topic, r.Kind, r.AggregateID, version, r.Time, r.PayloadType, r.ContentType, r.Payload, part); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRate(b, b.N)
		})
		b.Run("group-commit"+suffix, func(b *testing.B) {
			s := openBench(b)
			ctx := b.Context()
			var seq atomic.Int64
			b.SetParallelism(parallelism())
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				recs := make([]store.Record, 1)
				for pb.Next() {
					recs[0] = record(seq.Add(1))
					if err := s.Append(ctx, recs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRate(b, b.N)
		})
		// Four stores on one database, as four processes would append:
		// their group commits are separate transactions that commit
		// concurrently.
		b.Run("group-commit/stores=4"+suffix, func(b *testing.B) {
			dsn := benchDSN(b)
			var stores []*pgstore.Store
			for range 4 {
				s, err := pgstore.Open(b.Context(), dsn)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				stores = append(stores, s)
			}
			ctx := b.Context()
			var seq, goroutine atomic.Int64
			b.SetParallelism(parallelism())
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				s := stores[goroutine.Add(1)%int64(len(stores))]
				recs := make([]store.Record, 1)
				for pb.Next() {
					recs[0] = record(seq.Add(1))
					if err := s.Append(ctx, recs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRate(b, b.N)
		})
	}
}

// BenchmarkRead reads a log of 100,000 events in order and decodes each
// payload: the baseline is one raw pgx query over the whole table with
// encoding/json; the store pages through it with Read.
func BenchmarkRead(b *testing.B) {
	const total = 100_000
	s := openBench(b)
	ctx := b.Context()
	for i := int64(0); i < total; i += 1000 {
		recs := make([]store.Record, 1000)
		for j := range recs {
			recs[j] = benchRecord(i + int64(j))
		}
		if err := s.Append(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := s.Pool().Exec(ctx, "VACUUM ANALYZE event.events"); err != nil {
		b.Fatal(err)
	}

	b.Run("baseline=pgx-query-all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			rows, err := s.Pool().Query(ctx, `SELECT position, id, topic, kind, aggregate_id, version, time, metadata, payload_type, content_type, payload
FROM event.events ORDER BY txid, position`)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				var r store.Record
				var meta []byte
				if err := rows.Scan(&r.Position, &r.ID, &r.Topic, &r.Kind, &r.AggregateID, &r.Version, &r.Time, &meta, &r.PayloadType, &r.ContentType, &r.Payload); err != nil {
					b.Fatal(err)
				}
				var p userRegistered
				if err := json.Unmarshal(r.Payload, &p); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if err := rows.Err(); err != nil || n != total {
				b.Fatalf("read %d events, err %v", n, err)
			}
		}
		reportRate(b, total*b.N)
	})
	for _, limit := range []int{store.DefaultReadLimit, store.MaxReadLimit} {
		b.Run(fmt.Sprintf("store-read/limit=%d", limit), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				for r, err := range store.All(ctx, s, store.Query{Limit: limit}) {
					if err != nil {
						b.Fatal(err)
					}
					var p userRegistered
					if err := json.Unmarshal(r.Payload, &p); err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != total {
					b.Fatalf("read %d events, want %d", n, total)
				}
			}
			reportRate(b, total*b.N)
		})
	}
}

// BenchmarkReadTopic pages through a log of 50,000 events with a topic
// pattern, as a durable subscription on "user.>" catching up does. Nine in
// ten events are user.registered, one in ten order.placed. The baseline is
// the same read with ">" (no filter); "order.>" keeps one event in ten and
// "audit.>" none, so the store has to scan the log without returning much.
func BenchmarkReadTopic(b *testing.B) {
	const total = 50_000
	s := openBench(b)
	ctx := b.Context()
	if _, err := s.Pool().Exec(ctx, "ALTER TABLE event.events SET (autovacuum_enabled = false)"); err != nil {
		b.Fatal(err)
	}
	matches := map[string]int{">": total, "user.>": total - total/10, "order.>": total / 10, "audit.>": 0}
	for i := int64(0); i < total; i += 1000 {
		recs := make([]store.Record, 1000)
		for j := range recs {
			recs[j] = benchRecord(i + int64(j))
			if (i+int64(j))%10 == 9 {
				recs[j].Topic = "order.placed"
			}
		}
		if err := s.Append(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	// No ANALYZE, and none by autovacuum: a subscription catching up on a
	// backlog loaded since the last one reads with the planner guessing.
	// (With statistics that list these two topics the guess is right.)
	for _, topic := range []string{">", "user.>", "order.>", "audit.>"} {
		name := "topic=" + topic
		if topic == ">" {
			name = "baseline=" + name
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				n := 0
				for _, err := range store.All(ctx, s, store.Query{Topic: topic, Limit: store.DefaultReadLimit}) {
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != matches[topic] {
					b.Fatalf("read %d events, want %d", n, matches[topic])
				}
			}
			reportRate(b, total*b.N)
		})
	}
}
