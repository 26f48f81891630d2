package event

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestBackoffGrows(t *testing.T) {
	t.Parallel()
	p := RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Multiplier: 2, Jitter: -1}
	want := []time.Duration{10, 20, 40, 80, 100, 100, 100}
	for i, w := range want {
		if got := p.backoff(i + 1); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	if got := p.backoff(1 << 20); got != 100*time.Millisecond {
		t.Errorf("backoff of a huge retry number = %v, want the cap", got)
	}
	p.Multiplier = 1
	if got := p.backoff(5); got != 10*time.Millisecond {
		t.Errorf("Multiplier 1: backoff(5) = %v, want constant 10ms", got)
	}
}

func TestBackoffDefaultsAndJitter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		p        RetryPolicy
		n        int
		lo, hi   time.Duration
		mustVary bool
	}{
		{"zero policy: 100ms ±20%", RetryPolicy{}, 1, 80 * time.Millisecond, 120 * time.Millisecond, true},
		{"zero policy doubles", RetryPolicy{}, 2, 160 * time.Millisecond, 240 * time.Millisecond, true},
		{"zero policy caps at 10s", RetryPolicy{}, 30, 8 * time.Second, 12 * time.Second, true},
		{"jitter 0.5", RetryPolicy{InitialInterval: time.Second, Jitter: 0.5}, 1, 500 * time.Millisecond, 1500 * time.Millisecond, true},
		{"jitter 1", RetryPolicy{InitialInterval: time.Second, Jitter: 1}, 1, 0, 2 * time.Second, true},
		{"no jitter", RetryPolicy{InitialInterval: time.Second, Jitter: -1}, 1, time.Second, time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			seen := map[time.Duration]bool{}
			for range 200 {
				d := tc.p.backoff(tc.n)
				if d < tc.lo || d > tc.hi {
					t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tc.n, d, tc.lo, tc.hi)
				}
				seen[d] = true
			}
			if tc.mustVary && len(seen) < 100 {
				t.Errorf("200 waits took only %d distinct values: jitter not random", len(seen))
			}
		})
	}
}

// TestKeyTable drives the per-key sequencer directly through the
// interleavings that are hard to force through the bus: a successor
// dequeued before its predecessor, and publishes that fail after taking a
// sequence number.
func TestKeyTable(t *testing.T) {
	t.Parallel()
	var kt keyTable[int]
	kt.init()
	mk := func(key string, p int) *delivery[int] {
		d := &delivery[int]{}
		d.ev.AggregateID, d.ev.Payload = key, p
		kt.reserve(d)
		return d
	}
	payload := func(d *delivery[int]) int {
		if d == nil {
			return -1
		}
		return d.ev.Payload
	}

	// In order.
	a0, a1 := mk("a", 0), mk("a", 1)
	if !kt.acquire(a0) {
		t.Fatal("first event of a key not runnable")
	}
	if kt.acquire(a1) {
		t.Fatal("second event runnable while the first runs")
	}
	if got := payload(kt.finish(a0)); got != 1 {
		t.Fatalf("finish(a0) handed over %d, want the parked a1", got)
	}
	if got := payload(kt.finish(a1)); got != -1 {
		t.Fatalf("finish(a1) handed over %d, want nothing", got)
	}

	// Successor dequeued first.
	b0, b1, b2 := mk("b", 0), mk("b", 1), mk("b", 2)
	if kt.acquire(b2) || kt.acquire(b1) {
		t.Fatal("later events runnable before the first")
	}
	if !kt.acquire(b0) {
		t.Fatal("first event not runnable")
	}
	if got := payload(kt.finish(b0)); got != 1 {
		t.Fatalf("finish(b0) handed over %d, want 1", got)
	}
	if got := payload(kt.finish(b1)); got != 2 {
		t.Fatalf("finish(b1) handed over %d, want 2", got)
	}
	if got := payload(kt.finish(b2)); got != -1 {
		t.Fatalf("finish(b2) handed over %d, want nothing", got)
	}

	// A publish that fails while an earlier event runs is skipped.
	c0, c1, c2 := mk("c", 0), mk("c", 1), mk("c", 2)
	if !kt.acquire(c0) {
		t.Fatal("c0 not runnable")
	}
	if got := payload(kt.release(c1)); got != -1 {
		t.Fatalf("release(c1) handed over %d", got)
	}
	if kt.acquire(c2) {
		t.Fatal("c2 runnable while c0 runs")
	}
	if got := payload(kt.finish(c0)); got != 2 {
		t.Fatalf("finish(c0) handed over %d, want 2, skipping the failed 1", got)
	}
	if got := payload(kt.finish(c2)); got != -1 {
		t.Fatalf("finish(c2) handed over %d", got)
	}

	// The failing publish was the key's next, with a successor parked:
	// release hands the successor over.
	d0, d1 := mk("d", 0), mk("d", 1)
	if kt.acquire(d1) {
		t.Fatal("d1 runnable before d0")
	}
	if got := payload(kt.release(d0)); got != 1 {
		t.Fatalf("release(d0) handed over %d, want the parked d1", got)
	}
	if got := payload(kt.finish(d1)); got != -1 {
		t.Fatalf("finish(d1) handed over %d", got)
	}

	// The failing publish was the key's next and its successor is not
	// dequeued yet: the successor runs when it is.
	e0, e1 := mk("e", 0), mk("e", 1)
	if got := payload(kt.release(e0)); got != -1 {
		t.Fatalf("release(e0) handed over %d", got)
	}
	if !kt.acquire(e1) {
		t.Fatal("e1 not runnable after e0 was released")
	}
	kt.finish(e1)

	// Every key is idle again: an idle key stays in the table and its next
	// event runs at once.
	for i := range kt.shards {
		for k, ks := range kt.shards[i].keys {
			if ks.pending != 0 || ks.active || len(ks.parked) != 0 || ks.next != ks.tail {
				t.Fatalf("key %s not idle: %+v", k, ks)
			}
		}
	}
	f0 := mk("a", 0)
	if !kt.acquire(f0) {
		t.Fatalf("idle key's next event (seq %d) not runnable", f0.seq)
	}
	kt.finish(f0)

	// A sweep removes idle keys, and a swept key starts afresh.
	for i := range kt.shards {
		kt.shards[i].sweep()
		if n := len(kt.shards[i].keys); n != 0 {
			t.Fatalf("shard %d holds %d keys after a sweep", i, n)
		}
	}
	g0 := mk("a", 0)
	if g0.seq != 0 || !kt.acquire(g0) {
		t.Fatalf("swept key: seq %d, not runnable", g0.seq)
	}
	kt.finish(g0)
}

// TestKeyTableSweepsIdleKeys checks that a stream of ever-new keys does not
// grow the table without bound.
func TestKeyTableSweepsIdleKeys(t *testing.T) {
	t.Parallel()
	var kt keyTable[int]
	kt.init()
	for i := range 100_000 {
		d := &delivery[int]{ev: Event[int]{AggregateID: fmt.Sprintf("agg-%d", i)}}
		kt.reserve(d)
		if !kt.acquire(d) {
			t.Fatalf("event %d of a fresh key not runnable", i)
		}
		kt.finish(d)
	}
	total := 0
	for i := range kt.shards {
		total += len(kt.shards[i].keys)
	}
	if limit := keyShards * idleKeysPerShard; total > limit {
		t.Fatalf("table holds %d idle keys, more than %d", total, limit)
	}
}

// outboxSeen keeps the latest IDs: past its bound the oldest are forgotten,
// never the new ones.
func TestOutboxSeenKeepsTheLatest(t *testing.T) {
	t.Parallel()
	var o outboxSeen
	first := uuid.New()
	o.add(first)
	for range maxOutboxSeen - 1 {
		o.add(uuid.New())
	}
	last := uuid.New()
	o.add(last)
	if o.seen(first) {
		t.Error("the oldest ID was kept past the bound")
	}
	if !o.seen(last) {
		t.Error("the newest ID was not kept")
	}
	if o.seen(last) {
		t.Error("an ID was seen twice")
	}
}
