package event_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
	"github.com/ncore-io/event/store/sqlitestore"
)

// Consumer group benchmarks, on PostgreSQL and SQLite:
//
//   - GroupMembers: one group of 1, 2 and 4 members draining a backlog of
//     b.N events over 1,000 or 10,000 aggregates, each event taking its
//     handler 1 ms (the simulated work). Every member is a bus with a
//     store of its own: a pool of its own on PostgreSQL, connections of
//     its own to the one file on SQLite, as members in separate processes
//     would have. members=1 is the baseline; the others' events/s over it
//     is the speed-up. The members share the partitions before the
//     backlog appears (it is appended in one transaction, committed once
//     the timer runs), so that none starts alone with every partition.
//     skew-% is how much more than an even share the busiest member
//     handled: the drain ends when it is done. sleep-only is the floor:
//     goroutines doing nothing but the members' work, split as theirs is.
//   - GroupLatency: publish-to-handler latency of a group member at light
//     load, p50 and p99, with the publisher in another process (this test
//     binary run again) publishing an event every 5 ms. On PostgreSQL with
//     NOTIFY (the bus's defaults) and with polling only (a store that does
//     not LISTEN, the bus polling every 20 ms); on SQLite through the
//     store's watch of the file (every 50 ms by default). As the publisher
//     runs elsewhere, B/op and allocs/op are the consuming process's, per
//     event handled, idle polls and lease renewals included.

// groupWork is what handling one event costs in GroupMembers.
const groupWork = time.Millisecond

// groupAggregates are how many aggregates GroupMembers spreads its events
// over, round robin. Their partitions share the work out unevenly, the
// fewer aggregates the more: of 1,000, the busiest of 4 members gets 12.4%
// more than an even share (skew-%), which caps 4 members at 3.56 times
// one; of 10,000 (in 3,000 events: as many aggregates as events), 3.9%
// more, a cap of 3.85.
var groupAggregates = []int{1000, 10000}

// groupRecord is the ith event of GroupMembers over aggregates aggregates.
func groupRecord(i, aggregates int) store.Record {
	r := benchRecord(i)
	r.AggregateID = "user-" + strconv.Itoa(i%aggregates)
	return r
}

// groupLog is the log of one group benchmark, on one database or file.
type groupLog struct {
	// open returns a new store on the log, closed when the benchmark ends.
	open func() store.Store
	// held appends recs in one transaction and returns what commits it.
	held func(s store.Store, recs []store.Record) (commit func())
	// spec names the log for a child process (see openCrashStore).
	spec string
}

func newGroupLog(b *testing.B, kind string) groupLog {
	b.Helper()
	ctx := b.Context()
	if kind == "postgres" {
		dsn := pgtest.DSN(b)
		return groupLog{
			spec: "postgres:" + dsn,
			open: func() store.Store {
				s, err := pgstore.Open(ctx, dsn)
				if err != nil {
					b.Fatalf("open postgres store: %v", err)
				}
				b.Cleanup(func() { s.Close() })
				return s
			},
			held: func(s store.Store, recs []store.Record) func() {
				ps := s.(*pgstore.Store)
				tx, err := ps.Pool().Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				for part := range slices.Chunk(recs, 1000) {
					if err := ps.AppendTx(ctx, tx, part); err != nil {
						b.Fatal(err)
					}
				}
				return func() {
					if err := tx.Commit(ctx); err != nil {
						b.Fatal(err)
					}
				}
			},
		}
	}
	path := filepath.Join(b.TempDir(), "events.db")
	return groupLog{
		spec: "sqlite:" + path,
		open: func() store.Store {
			// Members notice other stores' appends by watching the file;
			// 5 ms instead of 50, so that they start on the backlog
			// together.
			s, err := sqlitestore.Open(ctx, path, sqlitestore.WithPollInterval(5*time.Millisecond))
			if err != nil {
				b.Fatalf("open sqlite store: %v", err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
		held: func(s store.Store, recs []store.Record) func() {
			ss := s.(*sqlitestore.Store)
			tx, err := ss.DB().BeginTx(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			for part := range slices.Chunk(recs, 1000) {
				if err := ss.AppendTx(ctx, tx, part); err != nil {
					b.Fatal(err)
				}
			}
			return func() {
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
			}
		},
	}
}

// waitGroupShares waits until the group has members live members that
// share every partition evenly.
func waitGroupShares[T any](b *testing.B, bus *event.Bus[T], group string, members, partitions int) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := bus.Group(b.Context(), group)
		if err != nil {
			b.Fatal(err)
		}
		held := 0
		even := len(info.Members) == members
		for _, m := range info.Members {
			held += m.Partitions
			even = even && m.Partitions <= store.Share(partitions, members)
		}
		if even && held == partitions {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("group %s: %d members hold %d of %d partitions after 30s, want %d members sharing all", group, len(info.Members), held, partitions, members)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// groupLease is the members' lease in GroupMembers: a member that holds
// more than its share gives the extras up when it renews, every third of
// the lease, so with the default lease (5s) the members of a new group
// share the partitions after up to 1.7s, and with this one after up to
// 0.4s. Renewing three times a second costs each member a claim every
// 333 ms, which the rates include.
const groupLease = time.Second

func BenchmarkGroupMembers(b *testing.B) {
	for _, aggs := range groupAggregates {
		b.Run("aggregates="+strconv.Itoa(aggs), func(b *testing.B) { benchGroupMembers(b, aggs) })
	}
}

func benchGroupMembers(b *testing.B, aggregates int) {
	for _, members := range []int{1, 2, 4} {
		// The least a group of members can take: as many goroutines, each
		// doing the work of the events of the partitions a member would
		// hold (Claim hands shares out in partition order), and nothing
		// else.
		b.Run("sleep-only/members="+strconv.Itoa(members), func(b *testing.B) {
			share := store.Share(store.DefaultPartitions, members)
			work := make([]int, members)
			for i := range b.N {
				r := groupRecord(i, aggregates)
				work[store.Partition(r.AggregateID, r.ID, store.DefaultPartitions)/share]++
			}
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, n := range work {
				wg.Go(func() {
					for range n {
						time.Sleep(groupWork)
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			reportRate(b, b.N)
			b.ReportMetric(100*(float64(slices.Max(work))*float64(members)/float64(b.N)-1), "skew-%")
		})
	}
	for _, kind := range []string{"postgres", "sqlite"} {
		for _, members := range []int{1, 2, 4} {
			b.Run(kind+"/members="+strconv.Itoa(members), func(b *testing.B) {
				log := newGroupLog(b, kind)
				pubStore := log.open()
				pub := newStoreBus[Registered](b, pubStore)
				var handled atomic.Int64
				per := make([]atomic.Int64, members)
				done := make(chan struct{})
				for i := range members {
					bus := newStoreBus[Registered](b, log.open())
					subscribe(b, bus, "user.>", func(ctx context.Context, ev event.Event[Registered]) error {
						time.Sleep(groupWork)
						per[i].Add(1)
						if handled.Add(1) == int64(b.N) {
							close(done)
						}
						return nil
					}, event.Durable("workers"), event.Shared(), event.Lease(groupLease))
				}
				waitGroupShares(b, pub, "workers", members, pubStore.(store.Grouper).Partitions())
				recs := make([]store.Record, b.N)
				for i := range recs {
					recs[i] = groupRecord(i, aggregates)
				}
				commit := log.held(pubStore, recs)
				b.ResetTimer()
				commit()
				select {
				case <-done:
				case <-time.After(time.Duration(b.N)*groupWork + time.Minute):
					b.Fatalf("%d of %d events handled in time", handled.Load(), b.N)
				}
				b.StopTimer()
				reportRate(b, b.N)
				busiest := int64(0)
				for i := range per {
					busiest = max(busiest, per[i].Load())
				}
				b.ReportMetric(100*(float64(busiest)*float64(members)/float64(b.N)-1), "skew-%")
			})
		}
	}
}

// The publisher child of GroupLatency: it publishes the given number of
// events at the given interval to the log of groupPublisherEnv, once it
// reads a line on its standard input.
const (
	groupPublisherEnv  = "EVENT_GROUP_PUBLISHER"  // a spec as openCrashStore takes
	groupPublishingEnv = "EVENT_GROUP_PUBLISHING" // "COUNT INTERVAL"
)

// stamp is the payload of GroupLatency: when the publisher called Publish.
type stamp struct {
	Seq    int   `json:"seq"`
	SentNS int64 `json:"sent_ns"`
}

func groupPublisher() int {
	ctx := context.Background()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "group publisher:", err)
		return 2
	}
	count, interval, _ := strings.Cut(os.Getenv(groupPublishingEnv), " ")
	n, err := strconv.Atoi(count)
	every, err2 := time.ParseDuration(interval)
	if err != nil || err2 != nil || n < 1 || every < 0 {
		return fail(fmt.Errorf("%s=%q: want a count and an interval, such as \"100 5ms\"", groupPublishingEnv, os.Getenv(groupPublishingEnv)))
	}
	s, err := openCrashStore(ctx, os.Getenv(groupPublisherEnv))
	if err != nil {
		return fail(err)
	}
	defer s.(io.Closer).Close()
	bus, err := event.New[stamp](event.WithStore(s))
	if err != nil {
		return fail(err)
	}
	defer bus.Close(ctx)
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fail(fmt.Errorf("waiting for the start: %w", err))
	}
	took := make([]time.Duration, n)
	next := time.Now()
	for i := range n {
		time.Sleep(time.Until(next))
		next = next.Add(every)
		start := time.Now()
		p := stamp{Seq: i, SentNS: start.UnixNano()}
		if err := bus.Publish(ctx, "tick.sent", p, event.Aggregate("agg-"+strconv.Itoa(i%1000))); err != nil {
			return fail(err)
		}
		took[i] = time.Since(start)
	}
	slices.Sort(took)
	fmt.Println("published", int64(took[n/2]), int64(took[n*99/100]))
	return 0
}

// startGroupPublisher starts the publisher child on log for n events and
// returns, once it is ready, the function that lets it begin, and the
// channel on which it says, once done, how long its Publish calls took
// (p50, p99).
func startGroupPublisher(b *testing.B, spec string, n int, every time.Duration) (begin func(), took <-chan [2]time.Duration) {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), groupPublisherEnv+"="+spec, fmt.Sprintf("%s=%d %s", groupPublishingEnv, n, every))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := false
	b.Cleanup(func() {
		if !exited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	ready := make(chan error, 1)
	report := make(chan [2]time.Duration, 1)
	go func() {
		out := bufio.NewScanner(stdout)
		if !out.Scan() || out.Text() != "ready" {
			ready <- fmt.Errorf("said %q instead of ready", out.Text())
			io.Copy(io.Discard, stdout)
			return
		}
		ready <- nil
		for out.Scan() {
			var p50, p99 int64
			if _, err := fmt.Sscanf(out.Text(), "published %d %d", &p50, &p99); err == nil {
				report <- [2]time.Duration{time.Duration(p50), time.Duration(p99)}
			}
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			cmd.Wait()
			exited = true
			b.Fatalf("group publisher: %v: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		b.Fatalf("group publisher not ready after 30s: %s", stderr.String())
	}
	b.Cleanup(func() {
		if exited {
			return
		}
		err := cmd.Wait()
		exited = true
		if err != nil {
			b.Errorf("group publisher: %v: %s", err, stderr.String())
		}
	})
	return func() {
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			b.Fatalf("start the group publisher: %v", err)
		}
		stdin.Close()
	}, report
}

func BenchmarkGroupLatency(b *testing.B) {
	const every = 5 * time.Millisecond
	variants := []struct {
		name  string
		kind  string
		store []pgstore.Option
		poll  time.Duration // of the bus; 0 for its default
	}{
		{name: "postgres/notify", kind: "postgres"},
		{name: "postgres/poll-20ms", kind: "postgres", store: []pgstore.Option{pgstore.WithoutListen()}, poll: 20 * time.Millisecond},
		{name: "sqlite/watch-50ms", kind: "sqlite"},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			log := newGroupLog(b, v.kind)
			var s store.Store
			if v.kind == "postgres" {
				ps, err := pgstore.Open(b.Context(), strings.TrimPrefix(log.spec, "postgres:"), v.store...)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { ps.Close() })
				s = ps
			} else {
				ss, err := sqlitestore.Open(b.Context(), strings.TrimPrefix(log.spec, "sqlite:"))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { ss.Close() })
				s = ss
			}
			opts := []event.Option{event.WithStore(s)}
			if v.poll > 0 {
				opts = append(opts, event.WithPollInterval(v.poll))
			}
			bus := newBus[stamp](b, opts...)
			lat := make([]time.Duration, b.N)
			var handled atomic.Int64
			done := make(chan struct{})
			subscribe(b, bus, "tick.>", func(ctx context.Context, ev event.Event[stamp]) error {
				now := time.Now()
				if i := ev.Payload.Seq; i < len(lat) && lat[i] == 0 {
					lat[i] = now.Sub(time.Unix(0, ev.Payload.SentNS))
					if handled.Add(1) == int64(b.N) {
						close(done)
					}
				}
				return nil
			}, event.Durable("latency"), event.Shared())
			waitGroupShares(b, bus, "latency", 1, s.(store.Grouper).Partitions())
			begin, took := startGroupPublisher(b, log.spec, b.N, every)
			b.ResetTimer()
			begin()
			select {
			case <-done:
			case <-time.After(time.Duration(b.N)*every + time.Minute):
				b.Fatalf("%d of %d events handled in time", handled.Load(), b.N)
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
			select {
			case t := <-took:
				// The part of the latency that the publisher's Publish
				// (its append's commit) took.
				b.ReportMetric(float64(t[0])/1e6, "publish-p50-ms")
				b.ReportMetric(float64(t[1])/1e6, "publish-p99-ms")
			case <-time.After(30 * time.Second):
				b.Fatal("the group publisher did not say how long its publishes took")
			}
		})
	}
}
