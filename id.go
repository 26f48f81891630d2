package event

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// lastV7 packs the millisecond timestamp (high 48 bits) and a 16-bit sequence
// of the last UUIDv7 handed out, so IDs from one process are strictly
// increasing even within a millisecond (RFC 9562, section 6.2, method 3).
var lastV7 atomic.Uint64

// newID returns a time-ordered UUIDv7 for an event that happened at now. It
// is lock-free and does not read the system's entropy pool per call: the
// sequence guarantees uniqueness within the process, and 58 random bits from
// a per-goroutine ChaCha8 stream make collisions across processes as unlikely
// as with fully random version 4 UUIDs of the same millisecond.
func newID(now time.Time) uuid.UUID {
	ms := uint64(now.UnixMilli()) << 16
	var v uint64
	for {
		last := lastV7.Load()
		v = max(ms, last+1)
		if lastV7.CompareAndSwap(last, v) {
			break
		}
	}
	var id uuid.UUID
	ts, seq := v>>16, v&0xffff
	id[0], id[1], id[2] = byte(ts>>40), byte(ts>>32), byte(ts>>24)
	id[3], id[4], id[5] = byte(ts>>16), byte(ts>>8), byte(ts)
	// rand_a (12 bits) holds the high 12 bits of the sequence.
	id[6] = 0x70 | byte(seq>>12)
	id[7] = byte(seq >> 4)
	r := rand.Uint64()
	// rand_b: the low 4 bits of the sequence, then 58 random bits.
	id[8] = 0x80 | byte(seq&0xf)<<2 | byte(r>>62)
	id[9], id[10], id[11] = byte(r>>48), byte(r>>40), byte(r>>32)
	id[12], id[13], id[14], id[15] = byte(r>>24), byte(r>>16), byte(r>>8), byte(r)
	return id
}

// parseID parses a stored event ID.
func parseID(s string) (uuid.UUID, error) { return uuid.Parse(s) }
