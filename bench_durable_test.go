package event_test

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// Durable benchmarks, on SQLite (synchronous=FULL) and PostgreSQL
// (synchronous_commit=on), each beside its baseline in the same invocation:
//
//   - PersistedPublish: bus.Publish with a store, 16 concurrent publishers,
//     beside the store's own group-commit Append from 16 goroutines (the
//     rate the bus can at best reach);
//   - DurableBacklog: a durable subscription draining a backlog, beside a
//     raw paging read with JSON decoding of the same backlog;
//   - DurableLatency: publish-to-handler latency of a durable subscription
//     at light load (one event in flight), as p50 and p99.

var benchBackends = []backend{{"sqlite", openSQLite}, {"postgres", openPG}}

func benchRecord(i int) store.Record {
	p, _ := json.Marshal(Registered{UserID: "user-" + strconv.Itoa(i%1000), Email: "someone" + strconv.Itoa(i) + "@example.com", N: i})
	return store.Record{
		ID: uuid.NewString(), Topic: "user.registered", Kind: store.KindDomain,
		AggregateID: "user-" + strconv.Itoa(i%1000), Time: time.Now(),
		PayloadType: "event_test.Registered", ContentType: "application/json", Payload: p,
	}
}

func BenchmarkPersistedPublish(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name+"/store-append", func(b *testing.B) {
			s := be.open(b)
			var n atomic.Int64
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := [1]store.Record{benchRecord(int(n.Add(1)))}
					if err := s.Append(context.Background(), rec[:]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRate(b, b.N)
		})
		b.Run(be.name+"/bus-publish", func(b *testing.B) {
			bus := newStoreBus[Registered](b, be.open(b))
			var n atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := int(n.Add(1))
					agg := "user-" + strconv.Itoa(i%1000)
					p := Registered{UserID: agg, Email: "someone" + strconv.Itoa(i) + "@example.com", N: i}
					if err := bus.Publish(context.Background(), "user.registered", p, event.Aggregate(agg)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRate(b, b.N)
		})
	}
}

// fillBacklog appends n events in large batches.
func fillBacklog(b *testing.B, s store.Store, n int) {
	b.Helper()
	for i := 0; i < n; {
		batch := make([]store.Record, 0, 1000)
		for ; i < n && len(batch) < cap(batch); i++ {
			batch = append(batch, benchRecord(i))
		}
		if err := s.Append(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDurableBacklog(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name+"/read-decode", func(b *testing.B) {
			s := be.open(b)
			fillBacklog(b, s, b.N)
			b.ResetTimer()
			n := 0
			var c store.Cursor
			for n < b.N {
				recs, next, err := s.Read(context.Background(), store.Query{After: c, Limit: 500})
				if err != nil {
					b.Fatal(err)
				}
				for i := range recs {
					var p Registered
					if err := json.Unmarshal(recs[i].Payload, &p); err != nil {
						b.Fatal(err)
					}
					n++
				}
				c = next
			}
			reportRate(b, b.N)
		})
		b.Run(be.name+"/durable-subscription", func(b *testing.B) {
			s := be.open(b)
			fillBacklog(b, s, b.N)
			bus := newStoreBus[Registered](b, s)
			done := make(chan struct{})
			var n atomic.Int64
			b.ResetTimer()
			event.Subscribe(bus, "user.>", func(ctx context.Context, ev event.Event[Registered]) error {
				if n.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			}, event.Durable("bench"))
			<-done
			b.StopTimer()
			reportRate(b, b.N)
		})
	}
}

func BenchmarkDurableLatency(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			bus := newStoreBus[Registered](b, be.open(b))
			got := make(chan time.Time, 1)
			event.Subscribe(bus, "user.>", func(ctx context.Context, ev event.Event[Registered]) error {
				got <- time.Now()
				return nil
			}, event.Durable("latency"))
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if err := bus.Publish(context.Background(), "user.registered", Registered{N: i}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, (<-got).Sub(start))
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
