package event

import (
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"

	"github.com/google/uuid"
)

// idGen makes UUIDv7s. Its zero value is ready; it is safe for concurrent
// use.
//
// last is on a cache line of its own: the publishing goroutine writes it
// once per event, and a variable that shared its line (the linker puts
// small variables side by side, and the time package's startNano, which
// every clock read loads, landed on it) would move that line between the
// cores of the publisher and of every goroutine reading the clock.
type idGen struct {
	_ [cacheLine]byte
	// last packs the millisecond timestamp (high 48 bits) and a 16-bit
	// sequence of the last UUIDv7 handed out.
	last atomic.Uint64
	_    [cacheLine - 8]byte
}

// ids is the process's generator, behind every event ID it makes.
var ids idGen

// newID returns a new event ID from the process's generator (see
// idGen.next).
func newID(ms int64) uuid.UUID { return ids.next(ms) }

// next returns a time-ordered UUIDv7 for an event of Unix millisecond ms.
//
// IDs of one generator are unique and strictly increasing, in the order in
// which next's atomic operations on g.last happen (so each goroutine's IDs
// increase, and an ID made after another returned is greater): the 48-bit
// millisecond and a 16-bit sequence within it form one counter (RFC 9562,
// section 6.2, method 1, a fixed-length dedicated counter, 12 bits of it in
// rand_a and 4 in rand_b). An ID's millisecond is never before ms; it runs
// ahead of the clock only when more than 65,536 IDs are made in one
// millisecond (the sequence carries into the millisecond, as section 6.2
// allows) or after the wall clock steps back, until the clock catches up.
//
// The common case is one atomic add, with no lock and no retry loop: each
// add returns a value no other call gets. The first call of a new
// millisecond moves the counter up to it with a compare-and-swap, which
// only succeeds from the value its own add returned, so that too is a
// value no other call gets.
//
// The remaining 58 bits are random (the runtime's per-thread ChaCha8
// generator, not the system's entropy pool per call), which makes
// collisions with other processes' IDs of the same millisecond and
// sequence as unlikely as between two random version 4 UUIDs.
func (g *idGen) next(ms int64) uuid.UUID {
	want := uint64(ms) << 16
	v := g.last.Add(1)
	for v < want {
		if g.last.CompareAndSwap(v, want) {
			v = want
			break
		}
		v = g.last.Add(1)
	}
	seq := v & 0xffff
	// The millisecond (48 bits), the version (7), and rand_a: the high 12
	// bits of the sequence.
	hi := v>>16<<16 | 0x7000 | seq>>4
	// The variant (0b10), the low 4 bits of the sequence, and 58 random
	// bits.
	lo := 1<<63 | (seq&0xf)<<58 | rand.Uint64()&(1<<58-1)
	var id uuid.UUID
	binary.BigEndian.PutUint64(id[:8], hi)
	binary.BigEndian.PutUint64(id[8:], lo)
	return id
}

// parseID parses a stored event ID.
func parseID(s string) (uuid.UUID, error) { return uuid.Parse(s) }
