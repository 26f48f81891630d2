package sqlitestore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ncore-io/event/internal/decode"
	"github.com/ncore-io/event/store"
)

// row is a record as stored: what Append binds and what reads scan.
type row struct {
	id          string
	topic       string
	kind        string
	aggregateID string // "" for none, stored as NULL
	version     int64
	position    int64
	timeUS      int64
	metadata    string // JSON, "" for none, stored as NULL
	payloadType string
	contentType string
	payload     []byte
	part        int64 // partition, set by Append (see store.Partition)

	same *row // when appending: the stored row with this ID and content
}

func toRow(r *store.Record) (row, error) {
	w := row{
		id:          r.ID,
		topic:       r.Topic,
		kind:        r.Kind,
		aggregateID: r.AggregateID,
		timeUS:      r.Time.UnixMicro(),
		payloadType: r.PayloadType,
		contentType: r.ContentType,
		payload:     r.Payload,
	}
	if len(r.Metadata) > 0 {
		b, err := json.Marshal(r.Metadata) // sorts keys, so equal maps encode equally
		if err != nil {
			return row{}, fmt.Errorf("encoding metadata of %s: %w", r.ID, err)
		}
		w.metadata = string(b)
	}
	return w, nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// sameContent reports whether two rows store the same event, positions and
// versions aside.
func (w *row) sameContent(o *row) bool {
	return w.id == o.id && w.topic == o.topic && w.kind == o.kind && w.aggregateID == o.aggregateID &&
		w.timeUS == o.timeUS && w.metadata == o.metadata && w.payloadType == o.payloadType &&
		w.contentType == o.contentType && bytes.Equal(w.payload, o.payload)
}

// recordColumns are the columns scanRecord reads, in order.
const recordColumns = `position, id, topic, kind, coalesce(aggregate_id, ''), version, time_us, coalesce(metadata, ''), payload_type, content_type, payload, payload IS NULL`

type scanner interface{ Scan(dest ...any) error }

func scanRow(sc scanner, w *row) error {
	var isNull bool
	if err := sc.Scan(&w.position, &w.id, &w.topic, &w.kind, &w.aggregateID, &w.version, &w.timeUS,
		&w.metadata, &w.payloadType, &w.contentType, &w.payload, &isNull); err != nil {
		return err
	}
	// The driver reads an empty BLOB as nil; tell it apart from NULL.
	if w.payload == nil && !isNull {
		w.payload = []byte{}
	}
	return nil
}

func (w *row) record() (store.Record, error) {
	r := store.Record{
		ID:          w.id,
		Topic:       w.topic,
		Kind:        w.kind,
		AggregateID: w.aggregateID,
		Version:     w.version,
		Position:    w.position,
		Time:        unixMicroUTC(w.timeUS),
		PayloadType: w.payloadType,
		ContentType: w.contentType,
		Payload:     w.payload,
	}
	if w.metadata != "" {
		m, err := decode.Metadata([]byte(w.metadata), &metadataKeys)
		if err != nil {
			return store.Record{}, fmt.Errorf("decoding metadata of %s: %w", w.id, err)
		}
		r.Metadata = m
	}
	return r, nil
}

// metadataKeys keeps the metadata keys that records of every store of
// the process repeat.
var metadataKeys decode.Names

func scanRecord(sc scanner) (store.Record, error) {
	var w row
	if err := scanRow(sc, &w); err != nil {
		return store.Record{}, err
	}
	return w.record()
}

func unixMicroUTC(us int64) time.Time { return time.UnixMicro(us).UTC() }
