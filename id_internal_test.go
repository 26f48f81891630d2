package event

import (
	"bytes"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/uuid"
)

// idMillis returns the Unix milliseconds in a UUIDv7.
func idMillis(id uuid.UUID) int64 {
	var ms int64
	for _, b := range id[:6] {
		ms = ms<<8 | int64(b)
	}
	return ms
}

// TestNewIDUniqueAndIncreasing makes IDs from several goroutines at once,
// many per millisecond, and checks that each goroutine's IDs strictly
// increase, that none repeats, and that each is a UUIDv7 whose millisecond
// is not before the one asked for.
func TestNewIDUniqueAndIncreasing(t *testing.T) {
	const goroutines, perG = 8, 20000
	ids := make([][]uuid.UUID, goroutines)
	var wg sync.WaitGroup
	for g := range ids {
		ids[g] = make([]uuid.UUID, perG)
		wg.Go(func() {
			for i := range perG {
				ms := time.Now().UnixMilli()
				id := newID(ms)
				if got := idMillis(id); got < ms {
					t.Errorf("ID %s has millisecond %d, before %d", id, got, ms)
					return
				}
				ids[g][i] = id
			}
		})
	}
	wg.Wait()
	seen := make(map[uuid.UUID]bool, goroutines*perG)
	for g := range ids {
		for i, id := range ids[g] {
			if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
				t.Fatalf("ID %s: version %d, variant %v", id, id.Version(), id.Variant())
			}
			if seen[id] {
				t.Fatalf("ID %s made twice", id)
			}
			seen[id] = true
			if i > 0 && bytes.Compare(ids[g][i-1][:], id[:]) >= 0 {
				t.Fatalf("goroutine %d: ID %d %s not after ID %d %s", g, i, id, i-1, ids[g][i-1])
			}
		}
	}
}

// TestNewIDOrderedAcrossGoroutines checks that an ID made after another was
// returned, in another goroutine, is greater.
func TestNewIDOrderedAcrossGoroutines(t *testing.T) {
	ms := time.Now().UnixMilli()
	prev := newID(ms)
	for range 1000 {
		ch := make(chan uuid.UUID)
		go func() { ch <- newID(ms) }()
		id := <-ch
		if bytes.Compare(prev[:], id[:]) >= 0 {
			t.Fatalf("ID %s made after %s is not greater", id, prev)
		}
		prev = id
	}
}

// TestNewIDClockSteps checks that IDs keep increasing when the clock goes
// back, and when one millisecond holds more IDs than its sequence, and
// that they come back to the clock's millisecond once it moves past them.
func TestNewIDClockSteps(t *testing.T) {
	var g idGen // the process's generator must not run ahead for other tests
	base := time.Now().UnixMilli()
	prev := g.next(base)
	check := func(id uuid.UUID) {
		t.Helper()
		if bytes.Compare(prev[:], id[:]) >= 0 {
			t.Fatalf("ID %s not after %s", id, prev)
		}
		prev = id
	}
	check(g.next(base - 5000)) // the clock stepped back
	for range 1 << 16 {        // more than a millisecond's sequence
		check(g.next(base))
	}
	if got := idMillis(prev); got != base+1 {
		t.Fatalf("after 65537 IDs of millisecond %d the last is of %d, want %d", base, got, base+1)
	}
	id := g.next(base + 2)
	check(id)
	if got := idMillis(id); got != base+2 {
		t.Fatalf("ID of millisecond %d has %d", base+2, got)
	}
}

// TestWallNanosFollowsTheClock checks the cheap clock against time.Now.
func TestWallNanosFollowsTheClock(t *testing.T) {
	for range 1000 {
		before := time.Now().UnixNano()
		got := wallNanos()
		after := time.Now().UnixNano()
		// The base reading may be up to a second old, so allow for the
		// wall clock's adjustment since; on a quiet clock it is exact.
		if got < before-int64(time.Millisecond) || got > after+int64(time.Millisecond) {
			t.Fatalf("wallNanos %d not within [%d, %d]", got, before, after)
		}
	}
}

// TestIDGenHasItsCacheLine checks that the generator's counter, written
// once per event, shares no cache line with whatever the linker puts next
// to the generator.
func TestIDGenHasItsCacheLine(t *testing.T) {
	var g idGen
	before := unsafe.Offsetof(g.last)
	after := unsafe.Sizeof(g) - before - unsafe.Sizeof(g.last)
	if before < cacheLine || after < cacheLine-unsafe.Sizeof(g.last) {
		t.Errorf("idGen.last has %d bytes before it and %d after, want %d and %d at least", before, after, cacheLine, cacheLine-8)
	}
}
