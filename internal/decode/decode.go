// Package decode has what the stores share to decode their rows into
// records cheaply: a table of the strings that recur from record to
// record, a decoder of metadata objects, and pages that cost one
// allocation each.
package decode

import (
	"encoding/json"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/ncore-io/event/store"
)

// Names keeps one copy of the strings that recur from record to record
// (topics, kinds, payload and content types, metadata keys), so that
// decoding them costs no allocation once seen. It holds at most
// MaxNames, each of at most MaxNameLen bytes; others are allocated as
// they come. It is safe for concurrent use.
type Names struct {
	mu sync.RWMutex
	m  map[string]string
}

// Bounds of a Names: how many strings it keeps, and how long each may be.
const (
	MaxNames   = 1024
	MaxNameLen = 128
)

// Get returns b as a string, the copy kept if there is one. The zero
// Names is empty and ready to use.
func (n *Names) Get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > MaxNameLen {
		return string(b)
	}
	n.mu.RLock()
	v, ok := n.m[string(b)]
	full := len(n.m) >= MaxNames
	n.mu.RUnlock()
	if ok {
		return v
	}
	v = string(b)
	if full {
		return v // without queueing on the lock to learn it again
	}
	n.mu.Lock()
	if n.m == nil {
		n.m = make(map[string]string)
	}
	if len(n.m) < MaxNames {
		n.m[v] = v
	}
	n.mu.Unlock()
	return v
}

// Metadata decodes a record's metadata, a JSON object of strings.
// The common shape, a few keys and values without escapes, is read here,
// keys through n; anything else goes to encoding/json, which also gives
// the error for what is not such an object.
func Metadata(b []byte, n *Names) (map[string]string, error) {
	var pairs [8][2][]byte
	count, ok := scanFlatObject(b, &pairs)
	if !ok {
		var m map[string]string
		err := json.Unmarshal(b, &m)
		return m, err
	}
	m := make(map[string]string, count)
	for _, p := range pairs[:count] {
		m[n.Get(p[0])] = string(p[1])
	}
	return m, nil
}

// scanFlatObject splits b, a JSON object, into its keys and values if it
// has at most len(pairs) of them, every value is a string, and no string
// needs unescaping. It reports false for anything else.
func scanFlatObject(b []byte, pairs *[8][2][]byte) (int, bool) {
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return 0, false
	}
	i = skipSpace(b, i+1)
	count := 0
	if i < len(b) && b[i] == '}' {
		return 0, skipSpace(b, i+1) == len(b)
	}
	for {
		if count == len(pairs) {
			return 0, false
		}
		var ok bool
		if pairs[count][0], i, ok = plainString(b, i); !ok {
			return 0, false
		}
		if i = skipSpace(b, i); i == len(b) || b[i] != ':' {
			return 0, false
		}
		if pairs[count][1], i, ok = plainString(b, skipSpace(b, i+1)); !ok {
			return 0, false
		}
		count++
		if i = skipSpace(b, i); i == len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return count, skipSpace(b, i+1) == len(b)
		default:
			return 0, false
		}
	}
}

// plainString reads the JSON string at b[i], if it has no escapes,
// control characters or invalid UTF-8, returning its contents and the
// index after it.
func plainString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// A Page gathers the records of one read in a buffer reused from read to
// read, and hands them out in a slice of exactly their number, so that a
// read costs one allocation for its records however many it turns out to
// have: growing a slice as rows come would allocate about twice their
// size, and one of the read's limit would allocate the whole limit for a
// read that finds one record, as most do at light load. A Page is for one
// goroutine; get one with GetPage and end it with Records or Discard.
type Page struct{ buf []store.Record }

// maxPooledPage is the largest buffer kept for reuse, in records: more
// than the pages of a replay (2,000 records), which would otherwise grow
// a buffer anew, twice their size, for every page. A record is about 200
// bytes, so a pooled buffer holds at most about 800 KB, and only until
// the pool is cleared, at the second collection after it was put back.
const maxPooledPage = 4096

var pages = sync.Pool{New: func() any { return new(Page) }}

// GetPage returns an empty Page.
func GetPage() *Page { return pages.Get().(*Page) }

// Add appends a zero record to p and returns it, to be filled in place.
func (p *Page) Add() *store.Record {
	p.buf = append(p.buf, store.Record{})
	return &p.buf[len(p.buf)-1]
}

// Drop removes the last record added; p must not be empty.
func (p *Page) Drop() {
	p.buf[len(p.buf)-1] = store.Record{}
	p.buf = p.buf[:len(p.buf)-1]
}

// Len is how many records p holds.
func (p *Page) Len() int { return len(p.buf) }

// Last returns the last record added; p must not be empty.
func (p *Page) Last() *store.Record { return &p.buf[len(p.buf)-1] }

// Records returns p's records in a new slice of their number (nil for
// none) and ends p.
func (p *Page) Records() []store.Record {
	var out []store.Record
	if len(p.buf) > 0 {
		out = slices.Clone(p.buf)
	}
	p.Discard()
	return out
}

// Discard ends p without its records.
func (p *Page) Discard() {
	clear(p.buf) // drop the references the records hold
	p.buf = p.buf[:0]
	if cap(p.buf) > maxPooledPage {
		p.buf = nil
	}
	pages.Put(p)
}
