package event

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Per-key ordering. All asynchronous events share one queue, so any idle
// worker takes the next one and no key waits behind another. Events with an
// aggregate ID take a sequence number of their key when published; a worker
// that dequeues one runs it only if it is its key's next and no other worker
// runs that key, and otherwise parks it with the key. Whoever finishes a
// key's event runs the parked successor, so each key's events run one at a
// time in publish order, and a parked event holds no worker.

const keyShards = 64

type keyTable[T any] struct {
	seed   maphash.Seed
	shards [keyShards]keyShard[T]
}

type keyShard[T any] struct {
	parked atomic.Int32 // events parked in this shard's keys, for Stats
	mu     sync.Mutex
	keys   map[string]*keyState[T]
	free   []*keyState[T]
	_      [64]byte // keep shards' locks on separate cache lines
}

type keyState[T any] struct {
	key     string
	shard   *keyShard[T]
	tail    uint64 // next sequence number to hand out
	next    uint64 // sequence number to run next
	active  bool   // a worker is running this key
	pending int    // sequence numbers handed out and not yet finished
	parked  map[uint64]*delivery[T]
	skip    map[uint64]struct{} // numbers whose publish failed after taking them
}

func (t *keyTable[T]) init() {
	t.seed = maphash.MakeSeed()
	for i := range t.shards {
		t.shards[i].keys = make(map[string]*keyState[T])
	}
}

// reserve gives d the next sequence number of its key.
func (t *keyTable[T]) reserve(d *delivery[T]) {
	sh := &t.shards[maphash.String(t.seed, d.ev.AggregateID)%keyShards]
	sh.mu.Lock()
	ks := sh.keys[d.ev.AggregateID]
	if ks == nil {
		if len(sh.keys) >= idleKeysPerShard {
			sh.sweep()
		}
		if n := len(sh.free); n > 0 {
			ks = sh.free[n-1]
			sh.free = sh.free[:n-1]
		} else {
			ks = &keyState[T]{shard: sh}
		}
		ks.key = d.ev.AggregateID
		sh.keys[ks.key] = ks
	}
	d.seq = ks.tail
	ks.tail++
	ks.pending++
	d.key = ks
	sh.mu.Unlock()
}

// release gives up the sequence number of a d that was never queued. If d's
// number was next and a successor is already parked, the successor is
// returned, for the caller to run.
func (t *keyTable[T]) release(d *delivery[T]) *delivery[T] {
	ks := d.key
	sh := ks.shard
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ks.pending--
	if ks.active || d.seq != ks.next {
		if ks.skip == nil {
			ks.skip = make(map[uint64]struct{})
		}
		ks.skip[d.seq] = struct{}{}
		return nil
	}
	return ks.advance()
}

// acquire reports whether the caller may run d now; if not, d is parked and
// will be returned by a later finish.
func (t *keyTable[T]) acquire(d *delivery[T]) bool {
	ks := d.key
	sh := ks.shard
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if ks.active || d.seq != ks.next {
		if ks.parked == nil {
			ks.parked = make(map[uint64]*delivery[T])
		}
		ks.parked[d.seq] = d
		sh.parked.Add(1)
		return false
	}
	ks.active = true
	return true
}

// finish ends the caller's run of d and returns the key's next event if it
// is parked, for the caller to run next.
func (t *keyTable[T]) finish(d *delivery[T]) *delivery[T] {
	ks := d.key
	sh := ks.shard
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ks.pending--
	ks.active = false
	return ks.advance()
}

// advance moves past the current number; called with the shard locked and
// the key inactive. It returns the next parked event, marking the key
// active.
func (ks *keyState[T]) advance() *delivery[T] {
	ks.next++
	for {
		if _, ok := ks.skip[ks.next]; !ok {
			break
		}
		delete(ks.skip, ks.next)
		ks.next++
	}
	if nd, ok := ks.parked[ks.next]; ok {
		delete(ks.parked, ks.next)
		ks.shard.parked.Add(-1)
		ks.active = true
		return nd
	}
	// A key with nothing pending stays in the table, idle, so that its next
	// event does not pay for a map delete and insert; sweep removes idle
	// keys once a shard holds many.
	return nil
}

// idleKeysPerShard is how many keys a shard holds before a new key sweeps
// out the idle ones. It bounds the table at about 64 × 256 keys beyond
// those with events in flight.
const idleKeysPerShard = 256

// sweep removes the shard's idle keys, keeping their states for reuse;
// called with the shard locked.
func (sh *keyShard[T]) sweep() {
	for k, ks := range sh.keys {
		if ks.pending != 0 || ks.active {
			continue
		}
		delete(sh.keys, k)
		*ks = keyState[T]{shard: sh, parked: ks.parked, skip: ks.skip}
		if len(sh.free) < idleKeysPerShard {
			sh.free = append(sh.free, ks)
		}
	}
}

// parked returns how many events wait behind an earlier event of their key.
func (t *keyTable[T]) parkedCount() int {
	n := 0
	for i := range t.shards {
		n += int(t.shards[i].parked.Load())
	}
	return n
}
