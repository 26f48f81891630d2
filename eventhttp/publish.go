package eventhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// postedEvent is one event of a POST /events body.
type postedEvent struct {
	ID              string            `json:"id"`
	Type            string            `json:"type"`
	Kind            string            `json:"kind"`
	AggregateID     string            `json:"aggregate_id"`
	Metadata        map[string]string `json:"metadata"`
	CorrelationID   string            `json:"correlation_id"`
	ExpectedVersion *int64            `json:"expected_version"`
	Data            json.RawMessage   `json:"data"`
}

// message is a posted event, checked and ready to publish.
type message struct {
	id         uuid.UUID
	idempotent bool // the ID comes from the client: a retry stores nothing new
	topic      string
	payload    any // a T
	opts       []event.PublishOption

	// What a stored event must match to be this one, posted again.
	kind, aggregateID string
	metadata          map[string]string
	correlation       uuid.UUID
}

// MaxIdempotencyKeyLen is the longest Idempotency-Key header, in bytes,
// that POST /events accepts.
const MaxIdempotencyKeyLen = 255

// idNamespace is the namespace of the name-based UUIDs that EventIDFor
// derives. It must never change: retries that span a deployment must find
// the events stored before it.
var idNamespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/ncore-io/event/eventhttp#event-id"))

// EventIDFor returns the event ID that POST /events gives an event posted
// with the given id field, or with the given Idempotency-Key header: key
// itself if it is a UUID, else a name-based (version 5) UUID derived from
// it. A client whose POST got no answer can GET /events/{id} with it.
func EventIDFor(key string) uuid.UUID {
	if id, err := uuid.Parse(key); err == nil {
		return id
	}
	return uuid.NewSHA1(idNamespace, []byte(key))
}

func (h *Handler) postEvents(w http.ResponseWriter, r *http.Request) error {
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		return err
	}
	key, err := idempotencyKey(r.Header)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.maxBody))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		return badRequest("read request body: %v", err)
	}
	posted, batch, err := parseBody(body)
	if err != nil {
		return err
	}
	msgs := make([]message, len(posted))
	for i := range posted {
		if msgs[i], err = h.prepare(&posted[i], key, i, batch); err != nil {
			if batch {
				return batchError(err, i)
			}
			return err
		}
	}
	if batch {
		return h.publishBatch(w, r.Context(), msgs)
	}
	return h.publishOne(w, r.Context(), &msgs[0])
}

// checkContentType accepts JSON and, since that is what curl sends for -d
// without a -H, form encoding and no content type at all.
func checkContentType(ct string) error {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "application/x-www-form-urlencoded") {
		return nil
	}
	e := newError(http.StatusUnsupportedMediaType, "Content-Type %q is not JSON; send application/json", ct)
	e.body.Header = "Content-Type"
	return e
}

func idempotencyKey(hd http.Header) (string, error) {
	vals := hd.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", nil
	}
	fail := func(format string, args ...any) (string, error) {
		e := badRequest("Idempotency-Key header: "+format, args...)
		e.body.Header = "Idempotency-Key"
		return "", e
	}
	switch key := vals[0]; {
	case len(vals) > 1:
		return fail("given %d times", len(vals))
	case key == "":
		return fail("empty")
	case len(key) > MaxIdempotencyKeyLen:
		return fail("%d bytes, longer than %d", len(key), MaxIdempotencyKeyLen)
	default:
		return key, nil
	}
}

// parseBody decodes a body holding one event (a JSON object) or a batch
// (an array of them), strictly: no unknown fields, no trailing data.
func parseBody(body []byte) (events []postedEvent, batch bool, err error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, false, badRequest("empty body; send a JSON object such as {\"type\": \"user.registered\", \"data\": {...}}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	switch trimmed[0] {
	case '{':
		events = make([]postedEvent, 1)
		err = dec.Decode(&events[0])
	case '[':
		batch = true
		err = dec.Decode(&events)
		if err == nil && len(events) == 0 {
			return nil, true, badRequest("empty array: no events to publish")
		}
	default:
		return nil, false, badRequest("body must be a JSON object (one event) or an array of them")
	}
	if err != nil {
		return nil, batch, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, batch, badRequest("trailing data after the JSON value at byte %d", dec.InputOffset())
	}
	return events, batch, nil
}

// jsonError says what was wrong with a body that did not decode.
func jsonError(err error) *httpError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return badRequest("malformed JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(err.Error(), "json: "))
	case errors.As(err, &typ):
		e := badRequest("field %s: want %v, got JSON %s", typ.Field, typ.Type, typ.Value)
		if typ.Field == "" {
			e.body.Error = fmt.Sprintf("want an event object, got JSON %s", typ.Value)
		}
		e.body.Field = typ.Field
		return e
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: unexpected end of body")
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	e := badRequest("%s", msg)
	if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
		e.body.Field = strings.Trim(f, `"`)
		e.body.Error = msg + "; an event has id, type, kind, aggregate_id, metadata, correlation_id, expected_version and data"
	}
	return e
}

// prepare checks a posted event and decodes its data. The event is the
// index-th of the body (of a batch if batch), for its ID under key.
func (h *Handler) prepare(p *postedEvent, key string, index int, batch bool) (message, error) {
	fail := func(field, format string, args ...any) (message, error) {
		e := badRequest(field+": "+format, args...)
		e.body.Field, e.body.Topic = field, p.Type
		return message{}, e
	}
	if p.Type == "" {
		return fail("type", "required: the topic to publish to, such as \"user.registered\"")
	}
	if err := store.ValidateTopic(p.Type); err != nil {
		return fail("type", "%v", err)
	}
	if len(p.Data) == 0 {
		return fail("data", "required: the event's payload")
	}
	if string(p.Data) == "null" {
		return fail("data", "must not be null")
	}
	m := message{topic: p.Type, kind: p.Kind, aggregateID: p.AggregateID, metadata: p.Metadata}
	if m.kind == "" {
		m.kind = string(event.KindDomain)
	}
	switch {
	case p.ID != "":
		m.id, m.idempotent = EventIDFor(p.ID), true
	case key != "":
		m.id, m.idempotent = EventIDFor(key), true
		if batch {
			m.id = uuid.NewSHA1(m.id, fmt.Appendf(nil, "%d", index))
		}
	default:
		id, err := uuid.NewV7()
		if err != nil {
			return message{}, fmt.Errorf("eventhttp: new event ID: %w", err)
		}
		m.id = id
	}
	m.opts = append(m.opts, event.EventID(m.id), event.AsKind(event.Kind(m.kind)))
	if p.AggregateID != "" {
		m.opts = append(m.opts, event.Aggregate(p.AggregateID))
	}
	for k := range p.Metadata {
		if strings.HasPrefix(k, metaPrefix) {
			return fail("metadata", "key %q: the prefix %q is reserved", k, metaPrefix)
		}
	}
	if len(p.Metadata) > 0 {
		m.opts = append(m.opts, event.Metadata(p.Metadata))
	}
	if p.CorrelationID != "" {
		id, err := uuid.Parse(p.CorrelationID)
		if err != nil {
			return fail("correlation_id", "not a UUID: %q", p.CorrelationID)
		}
		m.correlation = id
		m.opts = append(m.opts, event.Correlation(id))
	}
	if v := p.ExpectedVersion; v != nil {
		switch {
		case p.AggregateID == "":
			return fail("expected_version", "needs aggregate_id, the aggregate whose version is expected")
		case *v < 0:
			return fail("expected_version", "must be 0 (a new aggregate) or more, got %d", *v)
		}
		m.opts = append(m.opts, event.ExpectVersion(*v))
	}
	payload, err := h.bus.decode(p.Type, p.Data)
	if err != nil {
		return message{}, err
	}
	m.payload = payload
	return m, nil
}

// publishOne publishes one event and answers its stored envelope: 201, or
// 200 for an event whose client-given ID is stored already.
func (h *Handler) publishOne(w http.ResponseWriter, ctx context.Context, m *message) error {
	if m.idempotent {
		if done, err := h.answerStored(w, ctx, m); done || err != nil {
			return err
		}
	}
	if err := h.bus.publish(ctx, m.topic, m.payload, m.opts); err != nil {
		if m.idempotent && errors.Is(err, store.ErrDuplicateID) {
			// A concurrent request with the same ID stored it first (the
			// events differ in their time, so the store refused this one).
			if done, err := h.answerStored(w, ctx, m); done || err != nil {
				return err
			}
		}
		return err
	}
	rec, err := h.store.Load(ctx, m.id.String())
	if err != nil {
		// Stored, but not read back: the client must not retry as if it
		// failed. Answer what is known.
		writeJSON(w, http.StatusCreated, m.unread())
		return nil
	}
	writeJSON(w, http.StatusCreated, envelope(&rec))
	return nil
}

// unread is the envelope of a published event that could not be read
// back from the store: what the request said, without what the store
// assigned.
func (m *message) unread() Envelope {
	data, _ := json.Marshal(m.payload)
	meta := m.metadata
	if meta == nil {
		meta = map[string]string{}
	}
	return Envelope{ID: m.id.String(), Type: m.topic, Kind: m.kind, AggregateID: m.aggregateID, Metadata: meta, Data: data}
}

// answerStored answers 200 with the stored event of m's ID, if there is
// one and it is m; done reports whether it answered.
func (h *Handler) answerStored(w http.ResponseWriter, ctx context.Context, m *message) (done bool, err error) {
	rec, err := h.store.Load(ctx, m.id.String())
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !m.sameAs(&rec) {
		e := newError(http.StatusConflict, "event %s is stored already with other content: a retry (same id or Idempotency-Key) must repeat the original event", m.id)
		e.body.Topic = m.topic
		return false, e
	}
	writeJSON(w, http.StatusOK, envelope(&rec))
	return true, nil
}

// sameAs reports whether rec is m as stored by an earlier request. The
// payload is compared when the store keeps it as JSON, which is how it was
// posted.
func (m *message) sameAs(rec *store.Record) bool {
	if rec.Topic != m.topic || rec.Kind != m.kind || rec.AggregateID != m.aggregateID {
		return false
	}
	um := userMetadata(rec.Metadata)
	if len(um) != len(m.metadata) || (len(um) > 0 && !maps.Equal(um, m.metadata)) {
		return false
	}
	if m.correlation != (uuid.UUID{}) && correlation(rec) != m.correlation.String() {
		return false
	}
	if isJSON(rec.ContentType) {
		data, err := json.Marshal(m.payload)
		if err != nil || !bytes.Equal(data, rec.Payload) {
			return false
		}
	}
	return true
}
