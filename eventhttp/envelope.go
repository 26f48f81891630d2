package eventhttp

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// Keys under which package event stores the envelope fields that a
// store.Record has no column for.
const (
	metaPrefix      = event.MetaPrefix
	metaCorrelation = event.MetaCorrelationID
	metaCausation   = event.MetaCausationID
)

// Envelope is the JSON form of a stored event, as every route answers it.
// Fields are always present, empty when unset, except ContentType.
type Envelope struct {
	// ID is the event's ID, a UUID.
	ID string `json:"id"`
	// Type is the event's topic, such as "user.registered".
	Type string `json:"type"`
	// Kind is "domain", "system", "integration" or another label.
	Kind string `json:"kind"`
	// AggregateID names the entity the event is about, or is empty.
	AggregateID string `json:"aggregate_id"`
	// Version is the event's place in its aggregate, from 1; 0 without an
	// aggregate.
	Version int64 `json:"version"`
	// Position is the event's place in the store's global order.
	Position int64 `json:"position"`
	// Cursor resumes a listing or a stream just after this event (as
	// after= or Last-Event-ID). Reads set it; it is empty where the store
	// does not report it, as in the answer to a POST.
	Cursor string `json:"cursor"`
	// Time is when the event happened, in UTC.
	Time time.Time `json:"time"`
	// Metadata holds the publisher's keys.
	Metadata map[string]string `json:"metadata"`
	// CorrelationID and CausationID tie the event to the ones it belongs
	// with (see event.Event); CausationID is empty for an event that no
	// handler caused.
	CorrelationID string `json:"correlation_id"`
	CausationID   string `json:"causation_id"`
	// ContentType is set when the bus's codec stores payloads in another
	// encoding than JSON: Data is then a JSON string holding the payload
	// in base64.
	ContentType string `json:"content_type,omitempty"`
	// Data is the payload.
	Data json.RawMessage `json:"data"`
}

// envelope renders a stored record.
func envelope(rec *store.Record) Envelope {
	e := Envelope{
		ID:            rec.ID,
		Type:          rec.Topic,
		Kind:          rec.Kind,
		AggregateID:   rec.AggregateID,
		Version:       rec.Version,
		Position:      rec.Position,
		Cursor:        string(rec.Cursor),
		Time:          rec.Time.UTC(),
		Metadata:      userMetadata(rec.Metadata),
		CorrelationID: correlation(rec),
		CausationID:   rec.Metadata[metaCausation],
	}
	if e.Metadata == nil {
		e.Metadata = map[string]string{}
	}
	switch {
	case rec.Payload == nil:
		e.Data = json.RawMessage("null")
	case isJSON(rec.ContentType) && json.Valid(rec.Payload):
		e.Data = json.RawMessage(rec.Payload)
	default:
		// Another codec's bytes (or JSON that is not): base64, which
		// encoding/json makes of a []byte, and say what they are.
		e.ContentType = rec.ContentType
		e.Data, _ = json.Marshal(rec.Payload)
	}
	return e
}

// correlation returns a record's correlation ID: the one its metadata
// holds, or, without one, its own ID (see event.MetaCorrelationID).
func correlation(rec *store.Record) string {
	if c, ok := rec.Metadata[metaCorrelation]; ok {
		return c
	}
	return rec.ID
}

// isJSON reports whether a record's content type is JSON. Records without
// one are taken as JSON, the default codec's.
func isJSON(contentType string) bool {
	return contentType == "" || contentType == "application/json"
}

// userMetadata returns a record's metadata without the event package's own
// keys, nil when there are none.
func userMetadata(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, metaPrefix) {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(m))
		}
		out[k] = v
	}
	return out
}
