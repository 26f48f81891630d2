package sqlitestore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// benchPayload is a typical event: about 200 bytes of JSON.
type benchPayload struct {
	UserID    string    `json:"user_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Plan      string    `json:"plan"`
	Referrer  string    `json:"referrer"`
	Seats     int       `json:"seats"`
	CreatedAt time.Time `json:"created_at"`
}

func newBenchPayload(i int) []byte {
	b, err := json.Marshal(benchPayload{
		UserID:    "user-" + strconv.Itoa(i),
		Email:     "someone." + strconv.Itoa(i) + "@example.com",
		Name:      "Someone With A Reasonably Long Name",
		Plan:      "enterprise-annual",
		Referrer:  "https://example.com/landing/campaign?utm_source=newsletter",
		Seats:     25,
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	})
	if err != nil {
		panic(err)
	}
	return b
}

// appenders is the number of concurrent appending goroutines.
const appenders = 16

// BenchmarkAppend compares appending one event per call from 16 goroutines
// with synchronous=FULL: the baseline commits one transaction per event
// through database/sql, the store's group commit shares transactions.
func BenchmarkAppend(b *testing.B) {
	payload := newBenchPayload(1)
	if len(payload) < 180 || len(payload) > 260 {
		b.Fatalf("payload is %d bytes, want about 200", len(payload))
	}
	var seq atomic.Int64
	newID := func() string { return "e" + strconv.FormatInt(seq.Add(1), 10) }

	b.Run("tx-per-event", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "events.db")
		s, err := sqlitestore.Open(b.Context(), path) // creates the same table and indexes
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		db.SetMaxOpenConns(1) // one writer; more connections would only fight over the lock
		insert, err := db.Prepare(`INSERT INTO event_log (id, topic, kind, aggregate_id, version, time_us, metadata, payload_type, content_type, payload, part)
			VALUES (?, 'user.registered', 'domain', NULL, 0, ?, NULL, 'benchPayload', 'application/json', ?, ?)`)
		if err != nil {
			b.Fatal(err)
		}
		defer insert.Close()
		ctx := context.Background()
		b.SetParallelism(parallelism())
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					b.Error(err)
					return
				}
				id := newID()
				if _, err := tx.StmtContext(ctx, insert).ExecContext(ctx, id, time.Now().UnixMicro(), payload, store.Partition("", id, store.DefaultPartitions)); err != nil {
					b.Error(err)
					tx.Rollback()
					return
				}
				if err := tx.Commit(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})

	for _, agg := range []bool{false, true} {
		name := "group-commit"
		if agg {
			name += "/aggregate"
		}
		b.Run(name, func(b *testing.B) {
			s := open(b)
			ctx := context.Background()
			var goroutine atomic.Int64
			b.SetParallelism(parallelism())
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				aggID := ""
				if agg {
					aggID = "user-" + strconv.FormatInt(goroutine.Add(1), 10)
				}
				recs := make([]store.Record, 1)
				for pb.Next() {
					recs[0] = store.Record{ID: newID(), Topic: "user.registered", Kind: store.KindDomain, AggregateID: aggID,
						Time: time.Now(), PayloadType: "benchPayload", ContentType: "application/json", Payload: payload}
					if err := s.Append(ctx, recs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/float64(max(1, sqlitestore.Commits(s))), "events/commit")
		})
	}
}

// parallelism makes RunParallel use the given number of appenders.
func parallelism() int {
	return max(1, (appenders+runtimeProcs()-1)/runtimeProcs())
}

// readEvents is the size of the log that BenchmarkRead reads.
const readEvents = 100_000

// BenchmarkRead reads a log of 100,000 events in order and decodes every
// payload: the baseline streams one database/sql query, the store pages
// with Read. One op reads the whole log.
func BenchmarkRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "events.db")
	s, err := sqlitestore.Open(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batch := make([]store.Record, 1000)
	for i := 0; i < readEvents; i += len(batch) {
		for j := range batch {
			batch[j] = store.Record{ID: fmt.Sprintf("e%d", i+j), Topic: "user.registered", Kind: store.KindDomain,
				Time: time.Now(), PayloadType: "benchPayload", ContentType: "application/json", Payload: newBenchPayload(i + j)}
		}
		if err := s.Append(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("database-sql", func(b *testing.B) {
		db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_query_only=1")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		ctx := context.Background()
		b.ResetTimer()
		for b.Loop() {
			rows, err := db.QueryContext(ctx, `SELECT position, id, topic, kind, aggregate_id, version, time_us, metadata, payload_type, content_type, payload
				FROM event_log ORDER BY position`)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				var (
					pos, version, timeUS    int64
					id, topic, kind, pt, ct string
					aggregateID, metadata   sql.NullString
					payload                 []byte
					p                       benchPayload
				)
				if err := rows.Scan(&pos, &id, &topic, &kind, &aggregateID, &version, &timeUS, &metadata, &pt, &ct, &payload); err != nil {
					b.Fatal(err)
				}
				if err := json.Unmarshal(payload, &p); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if err := rows.Close(); err != nil {
				b.Fatal(err)
			}
			if n != readEvents {
				b.Fatalf("read %d events, want %d", n, readEvents)
			}
		}
		b.ReportMetric(float64(b.N*readEvents)/b.Elapsed().Seconds(), "events/s")
	})

	for _, limit := range []int{0, store.MaxReadLimit} {
		b.Run(fmt.Sprintf("store-read/limit=%d", limit), func(b *testing.B) {
			benchStoreRead(b, s, limit)
		})
	}
}

// benchStoreRead reads the whole log with store.All in pages of limit.
func benchStoreRead(b *testing.B, s *sqlitestore.Store, limit int) {
	{
		ctx := context.Background()
		b.ResetTimer()
		for b.Loop() {
			n := 0
			for r, err := range store.All(ctx, s, store.Query{Limit: limit}) {
				if err != nil {
					b.Fatal(err)
				}
				var p benchPayload
				if err := json.Unmarshal(r.Payload, &p); err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != readEvents {
				b.Fatalf("read %d events, want %d", n, readEvents)
			}
		}
		b.ReportMetric(float64(b.N*readEvents)/b.Elapsed().Seconds(), "events/s")
	}
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
