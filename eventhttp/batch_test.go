package eventhttp_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventhttp"
)

type batchAnswer struct {
	Events []eventhttp.Envelope `json:"events"`
}

const batchBody = `[
	{"type": "user.registered", "aggregate_id": "user-1", "data": {"user_id": "1", "email": "a@example.com"}},
	{"type": "order.placed", "aggregate_id": "order-1", "data": {"order_id": "1", "amount": 5}},
	{"type": "user.registered", "aggregate_id": "user-2", "data": {"user_id": "2", "email": "b@example.com"}}
]`

// A JSON array publishes its events as one batch, in order, to the same
// typed handlers as single events.
func TestPostBatch(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var mu sync.Mutex
	var users []string
	event.Subscribe(f.bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		mu.Lock()
		users = append(users, ev.Payload.UserID)
		mu.Unlock()
		return nil
	}, event.Sync())
	a := decode[batchAnswer](t, f.post(batchBody, http.StatusCreated))
	if len(a.Events) != 3 {
		t.Fatalf("answered %d events, want 3", len(a.Events))
	}
	for i, want := range []string{"user.registered/user-1", "order.placed/order-1", "user.registered/user-2"} {
		e := a.Events[i]
		if e.Type+"/"+e.AggregateID != want || e.Position != int64(i+1) || e.Version != 1 {
			t.Errorf("event %d: %+v, want %s at position %d", i, e, want, i+1)
		}
	}
	listed := get[page](f, "/events")
	if topics(listed) != "user.registered/user-1 order.placed/order-1 user.registered/user-2" {
		t.Errorf("listed %s", topics(listed))
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(users) != "[1 2]" {
		t.Errorf("handler got users %v", users)
	}
}

// A batch is stored whole or not at all.
func TestPostBatchAtomic(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.post(`{"type": "order.placed", "aggregate_id": "order-1", "data": {"order_id": "1"}}`, http.StatusCreated)
	for _, tc := range []struct {
		name, body string
		code       int
		substr     string
		index      int // -1: none
		field      string
	}{
		{"version conflict", `[
			{"type": "user.registered", "aggregate_id": "user-1", "expected_version": 0, "data": {}},
			{"type": "order.placed", "aggregate_id": "order-1", "expected_version": 0, "data": {}}]`,
			http.StatusConflict, "version conflict", -1, ""},
		{"bad data", `[{"type": "user.registered", "data": {}}, {"type": "user.registered", "data": {"user_id": 1}}]`,
			http.StatusBadRequest, "event 1: data", 1, "data"},
		{"unregistered topic", `[{"type": "user.registered", "data": {}}, {"type": "audit.x", "data": {}}]`,
			http.StatusBadRequest, `event 1: no payload type is registered for topic "audit.x"`, 1, "type"},
		{"invalid record", `[{"type": "user.registered", "data": {}}, {"type": "user.registered", "kind": "` + strings.Repeat("k", 100) + `", "data": {}}]`,
			http.StatusBadRequest, "invalid record", -1, ""},
		{"same id twice", `[{"id": "x", "type": "user.registered", "data": {}}, {"id": "x", "type": "user.registered", "data": {}}]`,
			http.StatusBadRequest, "event 1: id", 1, "id"},
		{"not an event", `[{"type": "user.registered", "data": {}}, 7]`,
			http.StatusBadRequest, "want an event object", -1, ""},
		{"unknown field", `[{"type": "user.registered", "data": {}, "when": 1}]`,
			http.StatusBadRequest, `unknown field "when"`, -1, "when"},
		{"empty", `[]`, http.StatusBadRequest, "empty array", -1, ""},
		{"too many", "[" + strings.Repeat(`{"type": "user.registered", "data": {}},`, eventhttp.MaxBatchLen) + `{"type": "user.registered", "data": {}}]`,
			http.StatusBadRequest, "at most 1000", -1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := count(t, f.store)
			code, hdr, data := f.do(http.MethodPost, "/events", tc.body)
			e := wantError(t, code, hdr, data, tc.code, tc.substr)
			if (e.Index == nil) != (tc.index < 0) || (e.Index != nil && *e.Index != tc.index) || e.Field != tc.field {
				t.Errorf("error %+v: want index %d, field %q", e, tc.index, tc.field)
			}
			if after := count(t, f.store); after != before {
				t.Errorf("%d events of a refused batch stored", after-before)
			}
		})
	}
}

// A batch retried with the same Idempotency-Key is stored once; each of its
// events gets its own ID derived from the key.
func TestPostBatchIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := setup(t)
	first := decode[batchAnswer](t, f.post(batchBody, http.StatusCreated, "Idempotency-Key", "import-7"))
	again := decode[batchAnswer](t, f.post(batchBody, http.StatusOK, "Idempotency-Key", "import-7"))
	if len(again.Events) != 3 {
		t.Fatalf("retry answered %d events", len(again.Events))
	}
	ids := map[string]bool{}
	for i := range first.Events {
		ids[first.Events[i].ID] = true
		if again.Events[i].ID != first.Events[i].ID || again.Events[i].Position != first.Events[i].Position {
			t.Errorf("event %d: retry answered %+v, first %+v", i, again.Events[i], first.Events[i])
		}
	}
	if len(ids) != 3 {
		t.Errorf("IDs %v: want one per event", ids)
	}
	if n := count(t, f.store); n != 3 {
		t.Errorf("%d events stored, want 3", n)
	}
	// Another batch under the same key is not a retry.
	code, hdr, data := f.do(http.MethodPost, "/events", strings.Replace(batchBody, `"amount": 5`, `"amount": 6`, 1), "Idempotency-Key", "import-7")
	if e := wantError(t, code, hdr, data, http.StatusConflict, "other content"); e.Index == nil || *e.Index != 1 {
		t.Errorf("error %+v: want index 1", e)
	}
	// Nor is a batch of which only some events are stored.
	f.post(`[{"id": "a", "type": "user.registered", "data": {}}]`, http.StatusCreated)
	code, hdr, data = f.do(http.MethodPost, "/events", `[{"id": "a", "type": "user.registered", "data": {}}, {"id": "b", "type": "user.registered", "data": {}}]`)
	if e := wantError(t, code, hdr, data, http.StatusConflict, "event 1 is not stored"); e.Index == nil || *e.Index != 1 {
		t.Errorf("error %+v: want index 1", e)
	}
	if n := count(t, f.store); n != 4 {
		t.Errorf("%d events stored, want 4", n)
	}
}

func TestPostBatchUnavailable(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if err := f.bus.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	code, hdr, data := f.do(http.MethodPost, "/events", batchBody)
	wantError(t, code, hdr, data, http.StatusServiceUnavailable, "bus closed")
	f.store.Close()
	code, hdr, data = f.do(http.MethodPost, "/events", batchBody, "Idempotency-Key", "k")
	wantError(t, code, hdr, data, http.StatusServiceUnavailable, "store closed")
}
