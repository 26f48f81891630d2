package pgstore

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/ncore-io/event/store"
)

// key is a place in the global order: the inserting transaction's ID, then
// the position. The zero key is the start of the log.
type key struct {
	txid uint64
	pos  int64
}

func (k key) less(o key) bool {
	return k.txid < o.txid || (k.txid == o.txid && k.pos < o.pos)
}

// cursor encodes k as "<txid>.<position>.<check>" in base 36. The check
// binds the cursor to this store (its ID, kept in the meta table) so that
// a cursor of another store or a mistyped one is refused instead of read
// from a wrong place.
func (s *Store) cursor(k key) store.Cursor {
	var b [40]byte
	return store.Cursor(s.appendCursor(b[:0], k))
}

func (s *Store) appendCursor(dst []byte, k key) []byte {
	dst = strconv.AppendUint(dst, k.txid, 36)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, k.pos, 36)
	dst = append(dst, '.')
	return strconv.AppendUint(dst, uint64(s.check(k)), 36)
}

func (s *Store) check(k key) uint32 {
	var b [24]byte
	binary.LittleEndian.PutUint64(b[0:], s.tag)
	binary.LittleEndian.PutUint64(b[8:], k.txid)
	binary.LittleEndian.PutUint64(b[16:], uint64(k.pos))
	h := fnv.New32a()
	h.Write(b[:])
	return h.Sum32()
}

// parseCursor decodes a cursor from [Store.cursor]; the zero Cursor is the
// zero key.
func (s *Store) parseCursor(c store.Cursor) (key, error) {
	if c == "" {
		return key{}, nil
	}
	bad := func() (key, error) {
		return key{}, fmt.Errorf("%w: %q was not produced by this store", store.ErrInvalidCursor, truncate(string(c), 64))
	}
	tx, rest, ok1 := strings.Cut(string(c), ".")
	pos, sum, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return bad()
	}
	var k key
	var err error
	if k.txid, err = strconv.ParseUint(tx, 36, 64); err != nil {
		return bad()
	}
	if k.pos, err = strconv.ParseInt(pos, 36, 64); err != nil || k.pos < 0 {
		return bad()
	}
	check, err := strconv.ParseUint(sum, 36, 32)
	var b [40]byte
	if err != nil || uint32(check) != s.check(k) || string(s.appendCursor(b[:0], k)) != string(c) {
		return bad()
	}
	return k, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
