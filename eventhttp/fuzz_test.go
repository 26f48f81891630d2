package eventhttp_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/ncore-io/event/eventhttp"
)

// FuzzPostEvents posts arbitrary bodies: the handler must never panic, and
// never store part of what it was sent. After each body either it answered
// 2xx and every event it answered is stored as answered, or it answered an
// error and the store holds nothing new.
func FuzzPostEvents(f *testing.F) {
	for _, seed := range []string{
		seedBody,
		`{"type": "user.registered", "data": {"user_id": "1", "email": "a@b.c"}}`,
		`{"type": "order.placed", "aggregate_id": "o-1", "kind": "integration", "metadata": {"k": "v"}, "data": {"order_id": "1", "amount": 1e3}}`,
		`{"type": "order.placed", "aggregate_id": "o-1", "expected_version": 0, "data": {"order_id": "2"}}`,
		`{"id": "import-1", "type": "audit.login", "data": [1, "two", {"three": null}]}`,
		`{"id": "0191d5a0-0000-7000-8000-000000000001", "type": "audit.x", "correlation_id": "0191d5a0-0000-7000-8000-000000000002", "data": "s"}`,
		`[{"type": "user.registered", "data": {}}, {"type": "audit.y", "data": 1}]`,
		`[]`,
		`{"type": "user.registered", "data": {`,
		`{"type": "user.registered", "data": {}} trailing`,
		`{"type": "user.registered", "data": {}, "extra": 1}`,
		`{"type": "user..registered", "data": {}}`,
		`{"type": "user.registered", "data": {"user_id": 1}}`,
		`{"type": "user.registered", "metadata": {"event.x": "y"}, "data": {}}`,
		`{"type": "audit.z", "aggregate_id": "a\u0000", "data": {}}`,
		`{"type": "audit.\u00e9v\u00e9nement", "data": "\ud800"}`,
		`null`,
		`"x"`,
		``,
	} {
		f.Add(seed)
	}
	fx := setup(f, eventhttp.RawJSON())
	f.Fuzz(func(t *testing.T, body string) {
		before := count(t, fx.store)
		code, _, data := do(t, fx.srv, http.MethodPost, "/events", body, "Content-Type", "application/json")
		after := count(t, fx.store)
		switch {
		case code == http.StatusCreated || code == http.StatusOK:
			var answered []eventhttp.Envelope
			if b := strings.TrimLeft(body, " \t\r\n"); b == "" || b[0] != '[' {
				answered = append(answered, decode[eventhttp.Envelope](t, data))
			} else {
				answered = decode[struct {
					Events []eventhttp.Envelope `json:"events"`
				}](t, data).Events
			}
			if code == http.StatusCreated && after != before+len(answered) {
				t.Fatalf("201 for %d events, but the store grew by %d", len(answered), after-before)
			}
			if code == http.StatusOK && after != before {
				t.Fatalf("200 (a retry), but the store grew by %d", after-before)
			}
			for _, e := range answered {
				rec, err := fx.store.Load(context.Background(), e.ID)
				if err != nil {
					t.Fatalf("answered event %s is not stored: %v", e.ID, err)
				}
				if rec.Topic != e.Type || rec.Position != e.Position || !jsonEqual(t, rec.Payload, e.Data) {
					t.Fatalf("stored %+v, answered %+v", rec, e)
				}
			}
		case code >= 400 && code < 600:
			if after != before {
				t.Fatalf("status %d, but the store grew by %d: %s", code, after-before, data)
			}
			if e := decode[apiError](t, data); e.Error == "" {
				t.Fatalf("status %d without an error: %s", code, data)
			}
		default:
			t.Fatalf("status %d: %s", code, data)
		}
	})
}
