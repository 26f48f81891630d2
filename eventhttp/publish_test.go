package eventhttp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventhttp"
)

// The original design's curl call, verbatim: curl sends form encoding, and
// the event reaches a typed handler as a UserRegistered.
func TestPostSeedCurlReachesTypedHandler(t *testing.T) {
	t.Parallel()
	f := setup(t)
	got := make(chan event.Event[UserRegistered], 1)
	if _, err := event.Subscribe(f.bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		got <- ev
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{curlContentType, ""} {
		code, _, data := f.do(http.MethodPost, "/events", seedBody, "Content-Type", ct)
		if code != http.StatusCreated {
			t.Fatalf("Content-Type %q: status %d: %s", ct, code, data)
		}
		env := decode[eventhttp.Envelope](t, data)
		id, err := uuid.Parse(env.ID)
		if err != nil || id.Version() != 7 {
			t.Errorf("id %q: want a UUIDv7 (%v)", env.ID, err)
		}
		if env.Type != "user.registered" || env.Kind != "domain" || env.AggregateID != "" || env.Version != 0 {
			t.Errorf("envelope %+v", env)
		}
		if env.Position < 1 || env.Time.IsZero() || env.CorrelationID != env.ID || env.CausationID != "" {
			t.Errorf("envelope %+v: want a position, a time, its own ID as correlation and no causation", env)
		}
		if env.Metadata == nil || len(env.Metadata) != 0 {
			t.Errorf("metadata %v, want {}", env.Metadata)
		}
		if !jsonEqual(t, env.Data, []byte(`{"user_id": "123", "email": "user@example.com"}`)) {
			t.Errorf("data %s", env.Data)
		}
		select {
		case ev := <-got:
			if ev.Payload != (UserRegistered{UserID: "123", Email: "user@example.com"}) || ev.ID.String() != env.ID || ev.Position != env.Position {
				t.Errorf("handler got %+v for envelope %+v", ev, env)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the typed handler got nothing")
		}
		stored := get[eventhttp.Envelope](f, "/events/"+env.ID)
		if stored.ID != env.ID || stored.Position != env.Position || !jsonEqual(t, stored.Data, env.Data) || !stored.Time.Equal(env.Time) {
			t.Errorf("GET /events/%s = %+v, POST answered %+v", env.ID, stored, env)
		}
	}
}

func TestPostEnvelopeFields(t *testing.T) {
	t.Parallel()
	f := setup(t)
	corr := uuid.New()
	body := fmt.Sprintf(`{"type": "order.placed", "aggregate_id": "order-1", "kind": "integration",
		"metadata": {"source": "shop"}, "correlation_id": %q, "data": {"order_id": "1", "amount": 9.5}}`, corr)
	first := decode[eventhttp.Envelope](t, f.post(body, http.StatusCreated))
	if first.Version != 1 || first.AggregateID != "order-1" || first.Kind != "integration" ||
		first.Metadata["source"] != "shop" || len(first.Metadata) != 1 || first.CorrelationID != corr.String() {
		t.Errorf("first envelope %+v", first)
	}
	second := decode[eventhttp.Envelope](t, f.post(`{"type": "order.shipped", "aggregate_id": "order-1", "data": {"order_id": "1"}}`, http.StatusCreated))
	if second.Version != 2 || second.Position <= first.Position || second.Kind != "domain" {
		t.Errorf("second envelope %+v after %+v", second, first)
	}
	evs, version, err := event.LoadAggregate[OrderPlaced](t.Context(), f.bus, "order-1")
	if err != nil || version != 2 || len(evs) != 2 || evs[0].Payload != (OrderPlaced{OrderID: "1", Amount: 9.5}) {
		t.Errorf("LoadAggregate = %+v, %d, %v", evs, version, err)
	}
}

// On a bus of a concrete type, every topic decodes into it.
func TestPostConcreteBusDecodesIntoT(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	bus := newBus[UserRegistered](t, s)
	got := make(chan UserRegistered, 1)
	bus.Handle("user.>", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		got <- ev.Payload
		return nil
	}, event.Sync())
	srv := serve(t, newHandler(t, bus))
	code, _, data := do(t, srv, http.MethodPost, "/events", `{"type": "user.invited", "data": {"user_id": "7"}}`)
	if code != http.StatusCreated {
		t.Fatalf("status %d: %s", code, data)
	}
	if p := <-got; p.UserID != "7" {
		t.Errorf("payload %+v", p)
	}
	code, hdr, data := do(t, srv, http.MethodPost, "/events", `{"type": "user.invited", "data": {"user_id": 7}}`)
	e := wantError(t, code, hdr, data, http.StatusBadRequest, "UserRegistered")
	if e.Field != "data" || e.Topic != "user.invited" {
		t.Errorf("error %+v: want field data, topic user.invited", e)
	}
	if n := count(t, s); n != 1 {
		t.Errorf("%d events stored, want 1", n)
	}
}

func TestPostRawJSON(t *testing.T) {
	t.Parallel()
	f := setup(t, eventhttp.RawJSON())
	got := make(chan json.RawMessage, 1)
	event.Subscribe(f.bus, "audit.>", func(ctx context.Context, ev event.Event[json.RawMessage]) error {
		got <- ev.Payload
		return nil
	}, event.Sync())
	env := decode[eventhttp.Envelope](t, f.post(`{"type": "audit.login", "data": {"who": "ada", "n": [1, 2]}}`, http.StatusCreated))
	if p := <-got; !jsonEqual(t, p, []byte(`{"who": "ada", "n": [1, 2]}`)) || !jsonEqual(t, env.Data, p) {
		t.Errorf("handler got %s, envelope data %s", p, env.Data)
	}
	// Registered topics still decode into their type.
	f.post(`{"type": "user.registered", "data": {"nope": 1}}`, http.StatusBadRequest)
}

// DomainEvent is an application's own event interface.
type DomainEvent interface{ EventName() string }

func (UserRegistered) EventName() string { return "user registered" }

func TestPostInterfaceBus(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	bus := newBus[DomainEvent](t, s)
	got := make(chan UserRegistered, 1)
	event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		got <- ev.Payload
		return nil
	}, event.Sync())
	srv := serve(t, newHandler(t, bus, eventhttp.Type[UserRegistered]("user.registered")))
	if code, _, data := do(t, srv, http.MethodPost, "/events", seedBody); code != http.StatusCreated {
		t.Fatalf("status %d: %s", code, data)
	}
	if p := <-got; p.Email != "user@example.com" {
		t.Errorf("payload %+v", p)
	}
}

// A topic matching several registrations takes its exact one, else the
// first pattern registered.
func TestPostTypePrecedence(t *testing.T) {
	t.Parallel()
	type Any struct {
		X int `json:"x"`
	}
	type Special struct {
		Y int `json:"y"`
	}
	s := openStore(t)
	bus := newBus[any](t, s)
	srv := serve(t, newHandler(t, bus,
		eventhttp.Type[Any]("a.>"), eventhttp.Type[Special]("a.b.*"), eventhttp.Type[Special]("a.exact")))
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"type": "a.exact", "data": {"y": 1}}`, http.StatusCreated},
		{`{"type": "a.exact", "data": {"x": 1}}`, http.StatusBadRequest},
		{`{"type": "a.b.c", "data": {"x": 1}}`, http.StatusCreated}, // a.> comes first
		{`{"type": "a.b.c", "data": {"y": 1}}`, http.StatusBadRequest},
	} {
		if code, _, data := do(t, srv, http.MethodPost, "/events", tc.body); code != tc.want {
			t.Errorf("%s: status %d, want %d: %s", tc.body, code, tc.want, data)
		}
	}
}

// Every refused POST says what was wrong and stores nothing.
func TestPostErrors(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.post(`{"type": "order.placed", "aggregate_id": "o-1", "data": {"order_id": "1"}}`, http.StatusCreated)
	long := strings.Repeat("k", eventhttp.MaxIdempotencyKeyLen+1)
	for _, tc := range []struct {
		name, body, contentType string
		header                  []string
		code                    int
		substr, field, param    string
	}{
		{name: "malformed", body: `{"type": "user.registered", "data": {`, code: 400, substr: "malformed JSON"},
		{name: "syntax", body: `{"type": "user.registered" "data": {}}`, code: 400, substr: "malformed JSON at byte"},
		{name: "unknown field", body: `{"type": "user.registered", "colour": "red", "data": {}}`, code: 400, substr: `unknown field "colour"`, field: "colour"},
		{name: "trailing data", body: `{"type": "user.registered", "data": {"user_id": "1"}} {}`, code: 400, substr: "trailing data"},
		{name: "trailing garbage", body: `{"type": "user.registered", "data": {"user_id": "1"}}x`, code: 400, substr: ""},
		{name: "wrong field type", body: `{"type": 5, "data": {}}`, code: 400, substr: "field type", field: "type"},
		{name: "empty body", body: ``, code: 400, substr: "empty body"},
		{name: "not an object", body: `"user.registered"`, code: 400, substr: "JSON object"},
		{name: "null body", body: `null`, code: 400, substr: "JSON object"},
		{name: "missing type", body: `{"data": {}}`, code: 400, substr: "type: required", field: "type"},
		{name: "invalid topic", body: `{"type": "user..registered", "data": {}}`, code: 400, substr: "empty segment", field: "type"},
		{name: "wildcard topic", body: `{"type": "user.*", "data": {}}`, code: 400, substr: "wildcard", field: "type"},
		{name: "unregistered topic", body: `{"type": "invoice.sent", "data": {}}`, code: 400, substr: `topic "invoice.sent"`, field: "type"},
		{name: "missing data", body: `{"type": "user.registered"}`, code: 400, substr: "data: required", field: "data"},
		{name: "null data", body: `{"type": "user.registered", "data": null}`, code: 400, substr: "must not be null", field: "data"},
		{name: "data wrong shape", body: `{"type": "user.registered", "data": [1, 2]}`, code: 400, substr: "UserRegistered", field: "data"},
		{name: "data wrong field type", body: `{"type": "order.placed", "data": {"amount": "ten"}}`, code: 400, substr: "amount", field: "data"},
		{name: "data unknown field", body: `{"type": "user.registered", "data": {"user_id": "1", "nick": "x"}}`, code: 400, substr: `unknown field "nick"`, field: "data"},
		{name: "reserved metadata", body: `{"type": "user.registered", "metadata": {"event.causation_id": "x"}, "data": {}}`, code: 400, substr: "reserved", field: "metadata"},
		{name: "bad correlation", body: `{"type": "user.registered", "correlation_id": "nope", "data": {}}`, code: 400, substr: "not a UUID", field: "correlation_id"},
		{name: "expected version without aggregate", body: `{"type": "user.registered", "expected_version": 0, "data": {}}`, code: 400, substr: "needs aggregate_id", field: "expected_version"},
		{name: "negative expected version", body: `{"type": "user.registered", "aggregate_id": "u", "expected_version": -1, "data": {}}`, code: 400, substr: "must be 0", field: "expected_version"},
		{name: "kind too long", body: `{"type": "user.registered", "kind": "` + strings.Repeat("k", 100) + `", "data": {}}`, code: 400, substr: "invalid record"},
		{name: "aggregate with NUL", body: `{"type": "user.registered", "aggregate_id": "a\u0000b", "data": {}}`, code: 400, substr: "invalid record"},
		{name: "version conflict", body: `{"type": "order.placed", "aggregate_id": "o-1", "expected_version": 0, "data": {}}`, code: 409, substr: "version conflict"},
		{name: "text/plain", body: seedBody, contentType: "text/plain", code: 415, substr: "not JSON"},
		{name: "xml", body: `<event/>`, contentType: "application/xml", code: 415, substr: "not JSON"},
		{name: "bad media type", body: seedBody, contentType: "json;;", code: 415, substr: "not JSON"},
		{name: "two idempotency keys", body: seedBody, header: []string{"Idempotency-Key", "a", "Idempotency-Key", "b"}, code: 400, substr: "given 2 times"},
		{name: "empty idempotency key", body: seedBody, header: []string{"Idempotency-Key", ""}, code: 400, substr: "empty"},
		{name: "long idempotency key", body: seedBody, header: []string{"Idempotency-Key", long}, code: 400, substr: "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := count(t, f.store)
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			code, hdr, data := f.do(http.MethodPost, "/events", tc.body, append([]string{"Content-Type", ct}, tc.header...)...)
			e := wantError(t, code, hdr, data, tc.code, tc.substr)
			if e.Field != tc.field {
				t.Errorf("field %q, want %q", e.Field, tc.field)
			}
			if after := count(t, f.store); after != before {
				t.Errorf("%d events stored by a refused POST", after-before)
			}
		})
	}
}

func TestPostVersionConflict(t *testing.T) {
	t.Parallel()
	f := setup(t)
	body := `{"type": "order.placed", "aggregate_id": "o-1", "expected_version": %d, "data": {"order_id": "1"}}`
	f.post(fmt.Sprintf(body, 0), http.StatusCreated)
	f.post(fmt.Sprintf(body, 1), http.StatusCreated)
	code, hdr, data := f.do(http.MethodPost, "/events", fmt.Sprintf(body, 1))
	e := wantError(t, code, hdr, data, http.StatusConflict, "version conflict")
	if e.AggregateID != "o-1" || e.ExpectedVersion == nil || *e.ExpectedVersion != 1 || e.ActualVersion == nil || *e.ActualVersion != 2 {
		t.Errorf("conflict %+v", e)
	}
	if n := count(t, f.store); n != 2 {
		t.Errorf("%d events stored, want 2", n)
	}
}

func TestPostBodyTooLarge(t *testing.T) {
	t.Parallel()
	f := setup(t, eventhttp.MaxBodySize(64))
	code, hdr, data := f.do(http.MethodPost, "/events", seedBody)
	wantError(t, code, hdr, data, http.StatusRequestEntityTooLarge, "larger than 64 bytes")
	f.post(`{"type": "user.registered", "data": {}}`, http.StatusCreated)
	if n := count(t, f.store); n != 1 {
		t.Errorf("%d events stored, want 1", n)
	}
}

// A retried POST with the same Idempotency-Key stores the event once and
// answers the same envelope, 200 instead of 201.
func TestPostIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var calls sync.WaitGroup
	handled := 0
	var mu sync.Mutex
	event.Subscribe(f.bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		mu.Lock()
		handled++
		mu.Unlock()
		return nil
	}, event.Sync())
	first := decode[eventhttp.Envelope](t, f.post(seedBody, http.StatusCreated, "Idempotency-Key", "signup-123"))
	if first.ID != eventhttp.EventIDFor("signup-123").String() {
		t.Errorf("id %s, want EventIDFor(key) %s", first.ID, eventhttp.EventIDFor("signup-123"))
	}
	again := decode[eventhttp.Envelope](t, f.post(seedBody, http.StatusOK, "Idempotency-Key", "signup-123"))
	if again.ID != first.ID || again.Position != first.Position || !again.Time.Equal(first.Time) {
		t.Errorf("retry answered %+v, first %+v", again, first)
	}
	// Concurrent retries: the store refuses all but one, and each is
	// answered with the stored event.
	for range 8 {
		calls.Add(1)
		go func() {
			defer calls.Done()
			code, _, data := f.do(http.MethodPost, "/events", `{"type": "user.registered", "data": {"user_id": "9"}}`, "Idempotency-Key", "race")
			if code != http.StatusCreated && code != http.StatusOK {
				t.Errorf("status %d: %s", code, data)
			}
		}()
	}
	calls.Wait()
	code, hdr, data := f.do(http.MethodPost, "/events", `{"type": "user.registered", "data": {"user_id": "other"}}`, "Idempotency-Key", "signup-123")
	wantError(t, code, hdr, data, http.StatusConflict, "other content")
	if n := count(t, f.store); n != 2 {
		t.Errorf("%d events stored, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if handled != 2 {
		t.Errorf("handler ran %d times, want 2", handled)
	}
}

// An id field sets the event's ID (derived from it unless it is a UUID),
// and makes a retry store nothing new.
func TestPostIDField(t *testing.T) {
	t.Parallel()
	f := setup(t)
	own := uuid.New()
	for _, tc := range []struct{ id, want string }{
		{own.String(), own.String()},
		{"legacy-42", eventhttp.EventIDFor("legacy-42").String()},
	} {
		body := fmt.Sprintf(`{"id": %q, "type": "user.registered", "metadata": {"k": "v"}, "data": {"user_id": "1"}}`, tc.id)
		env := decode[eventhttp.Envelope](t, f.post(body, http.StatusCreated))
		if env.ID != tc.want {
			t.Errorf("id %q stored as %s, want %s", tc.id, env.ID, tc.want)
		}
		// The id field wins over the header.
		f.post(body, http.StatusOK, "Idempotency-Key", "ignored")
		f.post(strings.Replace(body, `"k": "v"`, `"k": "w"`, 1), http.StatusConflict)
	}
	if n := count(t, f.store); n != 2 {
		t.Errorf("%d events stored, want 2", n)
	}
}

func TestPostUnavailable(t *testing.T) {
	t.Parallel()
	t.Run("store closed", func(t *testing.T) {
		f := setup(t)
		f.store.Close()
		code, hdr, data := f.do(http.MethodPost, "/events", seedBody)
		wantError(t, code, hdr, data, http.StatusServiceUnavailable, "store closed")
	})
	t.Run("bus closed", func(t *testing.T) {
		f := setup(t)
		if err := f.bus.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		code, hdr, data := f.do(http.MethodPost, "/events", seedBody)
		wantError(t, code, hdr, data, http.StatusServiceUnavailable, "bus closed")
		if n := count(t, f.store); n != 0 {
			t.Errorf("%d events stored", n)
		}
	})
	t.Run("context done", func(t *testing.T) {
		f := setup(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/events", strings.NewReader(seedBody))
		rec := httptest.NewRecorder()
		f.h.ServeHTTP(rec, req)
		wantError(t, rec.Code, rec.Header(), rec.Body.Bytes(), http.StatusServiceUnavailable, "context canceled")
		if n := count(t, f.store); n != 0 {
			t.Errorf("%d events stored", n)
		}
	})
}
