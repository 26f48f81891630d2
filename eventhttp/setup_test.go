package eventhttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventhttp"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// UserRegistered is the payload of user.registered in the original design.
type UserRegistered struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

// OrderPlaced is the payload of order.placed.
type OrderPlaced struct {
	OrderID string  `json:"order_id"`
	Amount  float64 `json:"amount"`
}

// seedBody is the original design's curl -d body, verbatim.
const seedBody = `{
    "type": "user.registered",
    "data": {
      "user_id": "123",
      "email": "user@example.com"
    }
  }`

// curlContentType is what curl sends with -d and no -H.
const curlContentType = "application/x-www-form-urlencoded"

func openStore(t testing.TB) *sqlitestore.Store {
	t.Helper()
	s, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "events.db"), sqlitestore.WithSynchronous(sqlitestore.SynchronousNormal))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newBus[T any](t testing.TB, s store.Store, opts ...event.Option) *event.Bus[T] {
	t.Helper()
	bus, err := event.New[T](append([]event.Option{event.WithStore(s)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		bus.Close(ctx)
	})
	return bus
}

func newHandler[T any](t testing.TB, bus *event.Bus[T], opts ...eventhttp.Option) *eventhttp.Handler {
	t.Helper()
	h, err := eventhttp.New(bus, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// serve mounts h as the package documentation says and serves it.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/events", h)
	mux.Handle("/events/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// fixture is a handler on a bus of any with a store, served over HTTP.
type fixture struct {
	t     testing.TB
	store *sqlitestore.Store
	bus   *event.Bus[any]
	h     *eventhttp.Handler
	srv   *httptest.Server
}

// setup serves a bus of any on which user.registered carries a
// UserRegistered and order.* an OrderPlaced.
func setup(t testing.TB, opts ...eventhttp.Option) *fixture {
	t.Helper()
	s := openStore(t)
	bus := newBus[any](t, s, event.WithTypes(UserRegistered{}, OrderPlaced{}))
	h := newHandler(t, bus, append([]eventhttp.Option{
		eventhttp.Type[UserRegistered]("user.registered"),
		eventhttp.Type[OrderPlaced]("order.*"),
	}, opts...)...)
	return &fixture{t: t, store: s, bus: bus, h: h, srv: serve(t, h)}
}

// request is an HTTP request of a test: headers are name, value pairs.
func (f *fixture) do(method, path, body string, header ...string) (int, http.Header, []byte) {
	f.t.Helper()
	return do(f.t, f.srv, method, path, body, header...)
}

func do(t testing.TB, srv *httptest.Server, method, path, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// post posts body as JSON and requires status want.
func (f *fixture) post(body string, want int, header ...string) []byte {
	f.t.Helper()
	code, _, data := f.do(http.MethodPost, "/events", body, append([]string{"Content-Type", "application/json"}, header...)...)
	if code != want {
		f.t.Fatalf("POST /events %s: status %d, want %d: %s", body, code, want, data)
	}
	return data
}

// get requires status 200 and decodes the answer.
func get[V any](f *fixture, path string) V {
	f.t.Helper()
	code, _, data := f.do(http.MethodGet, path, "")
	if code != http.StatusOK {
		f.t.Fatalf("GET %s: status %d: %s", path, code, data)
	}
	return decode[V](f.t, data)
}

func decode[V any](t testing.TB, data []byte) V {
	t.Helper()
	var v V
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, data, err)
	}
	return v
}

// apiError is the JSON of an error answer.
type apiError struct {
	Error           string   `json:"error"`
	Field           string   `json:"field"`
	Parameter       string   `json:"parameter"`
	Header          string   `json:"header"`
	Index           *int     `json:"index"`
	Topic           string   `json:"topic"`
	AggregateID     string   `json:"aggregate_id"`
	ExpectedVersion *int64   `json:"expected_version"`
	ActualVersion   *int64   `json:"actual_version"`
	Redriven        *int     `json:"redriven"`
	Failures        []string `json:"failures"`
}

// wantError checks an error answer's status, that its text contains
// substr, and that it is JSON.
func wantError(t testing.TB, code int, hdr http.Header, data []byte, wantCode int, substr string) apiError {
	t.Helper()
	if code != wantCode {
		t.Fatalf("status %d, want %d: %s", code, wantCode, data)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	e := decode[apiError](t, data)
	if !strings.Contains(e.Error, substr) {
		t.Errorf("error %q does not contain %q", e.Error, substr)
	}
	return e
}

type page struct {
	Events []eventhttp.Envelope `json:"events"`
	Next   string               `json:"next"`
}

// count returns how many events the store holds.
func count(t testing.TB, s store.Store) int {
	t.Helper()
	n := 0
	for _, err := range store.All(context.Background(), s, store.Query{Limit: store.MaxReadLimit}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// waitFor waits until cond holds, failing the test after a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}
