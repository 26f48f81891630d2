package eventhttp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventhttp"
	"github.com/ncore-io/event/store"
)

// publishMix publishes, in this order: user.registered for user-1 and
// user-2, order.placed for order-1 (a system event), and user.deleted for
// user-1.
func publishMix(t *testing.T, f *fixture) {
	t.Helper()
	ctx := t.Context()
	for _, p := range []struct {
		topic   string
		payload any
		opts    []event.PublishOption
	}{
		{"user.registered", UserRegistered{UserID: "1"}, []event.PublishOption{event.Aggregate("user-1")}},
		{"user.registered", UserRegistered{UserID: "2"}, []event.PublishOption{event.Aggregate("user-2")}},
		{"order.placed", OrderPlaced{OrderID: "1"}, []event.PublishOption{event.Aggregate("order-1"), event.AsKind(event.KindSystem)}},
		{"user.deleted", UserRegistered{UserID: "1"}, []event.PublishOption{event.Aggregate("user-1")}},
	} {
		if err := f.bus.Publish(ctx, p.topic, p.payload, p.opts...); err != nil {
			t.Fatal(err)
		}
	}
}

func topics(p page) string {
	var s []string
	for _, e := range p.Events {
		s = append(s, e.Type+"/"+e.AggregateID)
	}
	return strings.Join(s, " ")
}

// The original design's queries, and the other filters.
func TestListEvents(t *testing.T) {
	t.Parallel()
	f := setup(t)
	publishMix(t, f)
	all := get[page](f, "/events")
	if len(all.Events) != 4 || all.Next != all.Events[3].Cursor {
		t.Fatalf("all events: %s, next %q", topics(all), all.Next)
	}
	for i, e := range all.Events {
		if e.Position != int64(i+1) || e.Cursor == "" || e.Time.IsZero() {
			t.Errorf("event %d: %+v", i, e)
		}
	}
	future := url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339))
	for _, tc := range []struct{ query, want string }{
		{"aggregate_id=user-1", "user.registered/user-1 user.deleted/user-1"},
		{"type=user.registered", "user.registered/user-1 user.registered/user-2"},
		{"type=user.*", "user.registered/user-1 user.registered/user-2 user.deleted/user-1"},
		{"type=%3E", "user.registered/user-1 user.registered/user-2 order.placed/order-1 user.deleted/user-1"},
		{"kind=system", "order.placed/order-1"},
		{"since=2024-01-01T00:00:00Z", "user.registered/user-1 user.registered/user-2 order.placed/order-1 user.deleted/user-1"},
		{"since=" + future, ""},
		{"type=user.*&aggregate_id=user-2", "user.registered/user-2"},
		{"after=" + all.Events[1].Cursor, "order.placed/order-1 user.deleted/user-1"},
		{"limit=1&after=" + all.Events[0].Cursor, "user.registered/user-2"},
	} {
		if got := topics(get[page](f, "/events?"+tc.query)); got != tc.want {
			t.Errorf("?%s: %q, want %q", tc.query, got, tc.want)
		}
	}
	// Paging by next, to the end: an empty page with next unchanged.
	var seen []string
	after := ""
	for range 10 {
		p := get[page](f, "/events?limit=3&after="+after)
		if len(p.Events) == 0 {
			if p.Next != after {
				t.Errorf("empty page moved next from %q to %q", after, p.Next)
			}
			break
		}
		for _, e := range p.Events {
			seen = append(seen, e.ID)
		}
		after = p.Next
	}
	if len(seen) != 4 {
		t.Errorf("paging saw %d events, want 4", len(seen))
	}
}

// A filtered read of the store can come back short; the listing reads on
// to fill its page.
func TestListEventsFillsSparsePage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	// More unmatched records than one filtered store read looks at.
	now := time.Now()
	for b := range 11 {
		recs := make([]store.Record, 1000)
		for i := range recs {
			recs[i] = store.Record{ID: uuid.NewString(), Topic: "noise.tick", Time: now, ContentType: "application/json", Payload: []byte(`{}`)}
		}
		if err := f.store.Append(ctx, recs); err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
	}
	if err := f.bus.Publish(ctx, "user.registered", UserRegistered{UserID: "needle"}); err != nil {
		t.Fatal(err)
	}
	p := get[page](f, "/events?type=user.*&limit=5")
	if len(p.Events) != 1 || !strings.Contains(string(p.Events[0].Data), "needle") {
		t.Errorf("got %s, want the one user event", topics(p))
	}
}

func TestListEventsBadParameters(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct{ query, param, substr string }{
		{"limit=0", "limit", "from 1 to 1000"},
		{"limit=1001", "limit", "from 1 to 1000"},
		{"limit=ten", "limit", "from 1 to 1000"},
		{"since=yesterday", "since", "RFC 3339"},
		{"since=2024-01-01", "since", "RFC 3339"},
		{"type=user..x", "type", "empty segment"},
		{"type=user.>.x", "type", "before its last segment"},
		{"after=bogus", "after", "invalid cursor"},
		{"aggregate=user-1", "aggregate", "unknown"},
		{"type=a&type=b", "type", "given 2 times"},
	} {
		code, hdr, data := f.do(http.MethodGet, "/events?"+tc.query, "")
		e := wantError(t, code, hdr, data, http.StatusBadRequest, tc.substr)
		if e.Parameter != tc.param {
			t.Errorf("?%s: parameter %q, want %q", tc.query, e.Parameter, tc.param)
		}
	}
}

// A cursor into events that retention deleted is gone, not silently
// skipped.
func TestListEventsExpiredCursor(t *testing.T) {
	t.Parallel()
	f := setup(t)
	publishMix(t, f)
	first := get[page](f, "/events?limit=1").Next
	if _, err := f.store.DeleteBefore(t.Context(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	code, hdr, data := f.do(http.MethodGet, "/events?after="+first, "")
	if e := wantError(t, code, hdr, data, http.StatusGone, "cursor expired"); e.Parameter != "after" {
		t.Errorf("parameter %q, want after", e.Parameter)
	}
}

func TestGetEvent(t *testing.T) {
	t.Parallel()
	f := setup(t)
	id := uuid.New()
	if err := f.bus.Publish(t.Context(), "user.registered", UserRegistered{UserID: "1"},
		event.EventID(id), event.Aggregate("user-1"), event.Meta("source", "test")); err != nil {
		t.Fatal(err)
	}
	e := get[eventhttp.Envelope](f, "/events/"+id.String())
	if e.ID != id.String() || e.Type != "user.registered" || e.Version != 1 || e.Position != 1 ||
		e.Metadata["source"] != "test" || len(e.Metadata) != 1 || e.CorrelationID != id.String() {
		t.Errorf("envelope %+v", e)
	}
	if !jsonEqual(t, e.Data, []byte(`{"user_id": "1", "email": ""}`)) {
		t.Errorf("data %s", e.Data)
	}
	code, hdr, data := f.do(http.MethodGet, "/events/"+uuid.NewString(), "")
	wantError(t, code, hdr, data, http.StatusNotFound, "no event")
	code, hdr, data = f.do(http.MethodGet, "/events/"+id.String()+"?x=1", "")
	wantError(t, code, hdr, data, http.StatusBadRequest, "no query parameters")
}

// An event caused by a handler shows its cause.
func TestGetEventCausation(t *testing.T) {
	t.Parallel()
	f := setup(t)
	event.Subscribe(f.bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		return f.bus.Publish(ctx, "order.placed", OrderPlaced{OrderID: "welcome"})
	}, event.Sync())
	cause := decode[eventhttp.Envelope](t, f.post(seedBody, http.StatusCreated))
	p := get[page](f, "/events?type=order.placed")
	if len(p.Events) != 1 || p.Events[0].CausationID != cause.ID || p.Events[0].CorrelationID != cause.ID {
		t.Errorf("caused event %+v, cause %s", p.Events, cause.ID)
	}
}

// GET /events/stats answers the original design's monitoring JSON.
func TestStats(t *testing.T) {
	t.Parallel()
	f := setup(t)
	fail := true
	for range 3 {
		event.Subscribe(f.bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error { return nil }, event.Sync())
	}
	event.Subscribe(f.bus, "order.placed", func(ctx context.Context, ev event.Event[OrderPlaced]) error {
		if fail {
			return fmt.Errorf("payment service down")
		}
		return nil
	}, event.Sync())
	f.post(seedBody, http.StatusCreated)
	f.post(`{"type": "order.placed", "data": {"order_id": "1"}}`, http.StatusCreated)
	raw := get[map[string]any](f, "/events/stats")
	want := map[string]any{
		"published":   float64(2),
		"processed":   float64(3),
		"failed":      float64(1),
		"subscribers": map[string]any{"user.registered": float64(3), "order.placed": float64(1)},
	}
	for k, v := range want {
		if fmt.Sprint(raw[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v", k, raw[k], v)
		}
	}
	st := get[event.Stats](f, "/events/stats")
	if st.Delivered != 4 || st.DeadLettered != 1 {
		t.Errorf("stats %+v", st)
	}
	code, hdr, data := f.do(http.MethodGet, "/events/stats?verbose=1", "")
	wantError(t, code, hdr, data, http.StatusBadRequest, "unknown")
}

func TestReadStoreClosed(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.store.Close()
	for _, path := range []string{"/events", "/events/" + uuid.NewString()} {
		code, hdr, data := f.do(http.MethodGet, path, "")
		wantError(t, code, hdr, data, http.StatusServiceUnavailable, "store closed")
	}
}

func TestRoutesAnswerJSON(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{http.MethodDelete, "/events", http.StatusMethodNotAllowed, "GET, HEAD, POST"},
		{http.MethodPost, "/events/stats", http.StatusMethodNotAllowed, "GET, HEAD"},
		{http.MethodGet, "/events/deadletters/s/redrive", http.StatusMethodNotAllowed, "POST"},
		{http.MethodGet, "/events/a/b", http.StatusNotFound, ""},
	} {
		code, hdr, data := f.do(tc.method, tc.path, "")
		wantError(t, code, hdr, data, tc.code, tc.path)
		if got := hdr.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}
