package pgstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ncore-io/event/internal/decode"
	"github.com/ncore-io/event/store"
)

// Decoding of rows in PostgreSQL's binary format, for the reads that go
// through pgconn rather than pgx's Scan: a consumer group member reads
// once per event at light load, and Scan's destinations, plans and
// strings cost more than the record.

// binaryFormat, as the format codes of a statement's parameters or
// results, says that all of them are in binary.
var binaryFormat = []int16{1}

// pgEpochMicros is 2000-01-01 00:00:00 UTC, PostgreSQL's epoch for
// timestamps, in microseconds since the Unix epoch.
const pgEpochMicros = 946_684_800_000_000

func decodeInt8(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("an int8 of %d bytes", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func decodeXid8(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("an xid8 of %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

// decodeTimestamptz reads a timestamptz, in UTC as Scan's records have it.
func decodeTimestamptz(b []byte) (time.Time, error) {
	us, err := decodeInt8(b)
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMicro(us + pgEpochMicros).UTC(), nil
}

// jsonbText returns the JSON text of a binary jsonb, which is a version
// byte, 1, and the text.
func jsonbText(b []byte) ([]byte, error) {
	if len(b) == 0 || b[0] != 1 {
		return nil, errors.New("a jsonb value of an unknown format")
	}
	return b[1:], nil
}

// appendArrayHeader appends the header of a one-dimensional binary array
// of n elements of type oid, without NULLs; each element follows as its
// length and its bytes. An empty array has no dimension.
func appendArrayHeader(dst []byte, oid uint32, n int) []byte {
	if n == 0 {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(dst, 0), 0), oid)
	}
	dst = binary.BigEndian.AppendUint32(dst, 1) // dimensions
	dst = binary.BigEndian.AppendUint32(dst, 0) // no NULLs
	dst = binary.BigEndian.AppendUint32(dst, oid)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	return binary.BigEndian.AppendUint32(dst, 1) // lower bound
}

// Type OIDs of the array elements that reads send.
const (
	oidInt4 = 23
	oidText = 25
	oidInt8 = 20
	oidXid8 = 5069
)

// groupRecordCols is how many columns a row of read_partitions has
// (migration 6): the record's twelve, then the bounds.
const groupRecordCols = 13

// decodeGroupRecord decodes a record row of read_partitions into r,
// returning its key.
func (s *Store) decodeGroupRecord(v [][]byte, r *store.Record) (key, error) {
	if len(v) != groupRecordCols {
		return key{}, fmt.Errorf("a row of %d columns, want %d", len(v), groupRecordCols)
	}
	return s.decodeRecord(v[:recordRowCols], r)
}

// recordRowCols is how many columns decodeRecord reads: txid, then
// recordCols.
const recordRowCols = 12

// decodeRecord decodes the columns txid, position, id, topic, kind,
// aggregate_id, version, time, metadata, payload_type, content_type and
// payload into r, returning its key. Strings that recur (topics, kinds,
// types) are interned; the rest is copied out of v.
func (s *Store) decodeRecord(v [][]byte, r *store.Record) (key, error) {
	var k key
	var err error
	if k.txid, err = decodeXid8(v[0]); err != nil {
		return k, fmt.Errorf("txid: %w", err)
	}
	if k.pos, err = decodeInt8(v[1]); err != nil {
		return k, fmt.Errorf("position: %w", err)
	}
	r.ID = string(v[2])
	r.Topic = s.names.Get(v[3])
	r.Kind = s.names.Get(v[4])
	r.AggregateID = string(v[5])
	if r.Version, err = decodeInt8(v[6]); err != nil {
		return k, fmt.Errorf("record %s: version: %w", r.ID, err)
	}
	if r.Time, err = decodeTimestamptz(v[7]); err != nil {
		return k, fmt.Errorf("record %s: time: %w", r.ID, err)
	}
	if v[8] != nil {
		text, err := jsonbText(v[8])
		if err != nil {
			return k, fmt.Errorf("record %s: metadata: %w", r.ID, err)
		}
		if r.Metadata, err = decode.Metadata(text, &s.names); err != nil {
			return k, fmt.Errorf("record %s: metadata: %w", r.ID, err)
		}
	}
	r.PayloadType = s.names.Get(v[9])
	r.ContentType = s.names.Get(v[10])
	if v[11] != nil {
		r.Payload = append(make([]byte, 0, len(v[11])), v[11]...)
	}
	r.Position = k.pos
	return k, nil
}
