package handler_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/examples/userfanout/data"
	"github.com/ncore-io/event/examples/userfanout/data/datatest"
	"github.com/ncore-io/event/examples/userfanout/data/repository"
	"github.com/ncore-io/event/examples/userfanout/handler"
	"github.com/ncore-io/event/examples/userfanout/service"
)

// The original design's example event, as its curl call posts it.
const seedEvent = `{
    "type": "user.registered",
    "data": {
      "user_id": "123",
      "email": "user@example.com"
    }
  }`

// curlForm is the content type curl -d sends when no -H is given.
const curlForm = "application/x-www-form-urlencoded"

type fixture struct {
	srv      *httptest.Server
	api      *handler.Handler
	db       *data.DB
	profiles *service.Profile
}

// setup serves the handler on a real bus with an SQLite store and the four
// services subscribed.
func setup(t *testing.T, opts handler.Options) *fixture {
	t.Helper()
	db := datatest.SQLite(t)
	bus, err := event.New[any](event.WithStore(db.Store()), event.WithPollInterval(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := bus.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	svcs := service.NewServices(db, service.Options{})
	if _, err := svcs.Subscribe(bus); err != nil {
		t.Fatal(err)
	}
	api, err := handler.New(bus, service.NewUserService(db, bus), svcs.Profile, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		api.Close()
		srv.Close()
	})
	return &fixture{srv: srv, api: api, db: db, profiles: svcs.Profile}
}

// do sends a request and returns the status, the headers and the body.
func (f *fixture) do(t *testing.T, method, path, contentType, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("answer %q is not the JSON expected: %v", body, err)
	}
	return v
}

type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field"`
}

type userView struct {
	repository.User
	Profile *struct {
		DisplayName string `json:"display_name"`
	} `json:"profile"`
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCreateUserThenGetIt(t *testing.T) {
	t.Parallel()
	f := setup(t, handler.Options{})
	// As curl -d sends it, without -H.
	code, hdr, body := f.do(t, "POST", "/users", curlForm, `{"email": "ada@example.com", "name": "Ada Lovelace"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST /users = %d %s, want 201", code, body)
	}
	u := decode[repository.User](t, body)
	if u.ID != "1" || u.Email != "ada@example.com" || u.Name != "Ada Lovelace" || u.CreatedAt.IsZero() {
		t.Errorf("created %+v", u)
	}
	if loc := hdr.Get("Location"); loc != "/users/1" {
		t.Errorf("Location %q, want /users/1", loc)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if code, _, body := f.do(t, "POST", "/users", "application/json", `{"email": "grace@example.com", "name": "Grace Hopper"}`); code != http.StatusCreated {
		t.Errorf("POST /users with application/json = %d %s", code, body)
	}
	// The profile service makes the profile after the commit.
	waitFor(t, "user 1's profile", func() bool {
		code, _, body := f.do(t, "GET", "/users/1", "", "")
		if code != http.StatusOK {
			t.Fatalf("GET /users/1 = %d %s", code, body)
		}
		v := decode[userView](t, body)
		if v.User != u {
			t.Fatalf("GET /users/1 = %+v, want %+v", v.User, u)
		}
		return v.Profile != nil && v.Profile.DisplayName == "Ada Lovelace"
	})
	code, _, body = f.do(t, "GET", "/users/999", "", "")
	if e := decode[errorBody](t, body); code != http.StatusNotFound || e.Error != "no user 999" {
		t.Errorf("GET /users/999 = %d %s, want 404 no user 999", code, body)
	}
}

// Bad requests are refused with a JSON error that says what was wrong, and
// store nothing.
func TestCreateUserRefusesBadRequests(t *testing.T) {
	t.Parallel()
	f := setup(t, handler.Options{})
	if code, _, body := f.do(t, "POST", "/users", "", `{"email": "ada@example.com", "name": "Ada"}`); code != http.StatusCreated {
		t.Fatalf("POST /users without a content type = %d %s", code, body)
	}
	for _, c := range []struct {
		name, contentType, body string
		status                  int
		field, says             string
	}{
		{"malformed", curlForm, `{"email": `, 400, "", "unexpected EOF"},
		{"not an object", curlForm, `["ada@example.com"]`, 400, "", "cannot unmarshal array"},
		{"unknown field", curlForm, `{"email": "a@example.com", "name": "A", "admin": true}`, 400, "", `unknown field "admin"`},
		{"trailing data", curlForm, `{"email": "a@example.com", "name": "A"} {}`, 400, "", "trailing data"},
		{"empty body", curlForm, ``, 400, "", "empty body"},
		{"no email", curlForm, `{"name": "A"}`, 400, "email", "email: required"},
		{"bad email", curlForm, `{"email": "ada", "name": "A"}`, 400, "email", "not a bare address"},
		{"no name", curlForm, `{"email": "a@example.com"}`, 400, "name", "name: required"},
		{"taken email", curlForm, `{"email": "ada@example.com", "name": "Ada again"}`, 409, "email", "ada@example.com is already registered"},
		{"not JSON", "text/plain", `{"email": "a@example.com", "name": "A"}`, 415, "", `Content-Type "text/plain" is not JSON`},
		{"too big", curlForm, `{"email": "a@example.com", "name": "` + strings.Repeat("a", 70<<10) + `"}`, 413, "", "larger than"},
	} {
		code, hdr, body := f.do(t, "POST", "/users", c.contentType, c.body)
		if code != c.status || hdr.Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d (%s) %s, want %d in JSON", c.name, code, hdr.Get("Content-Type"), body, c.status)
			continue
		}
		e := decode[errorBody](t, body)
		if e.Field != c.field || !strings.Contains(e.Error, c.says) {
			t.Errorf("%s: error %+v, want field %q and a message containing %q", c.name, e, c.field, c.says)
		}
	}
	n, err := repository.Users{}.Count(context.Background(), f.db)
	if err != nil || n != 1 {
		t.Errorf("%d users stored, %v; want only the first", n, err)
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	f := setup(t, handler.Options{})
	for _, c := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/users", 405, "POST"},
		{"DELETE", "/users/1", 405, "GET, HEAD"},
		{"GET", "/nowhere", 404, ""},
		{"GET", "/users/1/x", 404, ""},
		{"GET", "/events", 200, ""},
		{"GET", "/events/", 404, ""}, // eventhttp's own answer: mounted on both
		{"GET", "/events/stats", 200, ""},
		{"PUT", "/events", 405, "GET, HEAD, POST"},
	} {
		code, hdr, body := f.do(t, c.method, c.path, "", "")
		if code != c.status || hdr.Get("Allow") != c.allow || !json.Valid([]byte(body)) {
			t.Errorf("%s %s = %d (Allow %q) %s, want %d (Allow %q) in JSON", c.method, c.path, code, hdr.Get("Allow"), body, c.status, c.allow)
		}
	}
}

// The original design's curl call, as written: its data decodes into
// UserRegistered, so it reaches the services' typed handlers.
func TestPostedEventReachesTheServices(t *testing.T) {
	t.Parallel()
	f := setup(t, handler.Options{})
	code, _, body := f.do(t, "POST", "/events", curlForm, seedEvent)
	if code != http.StatusCreated {
		t.Fatalf("POST /events = %d %s, want 201", code, body)
	}
	waitFor(t, "the profile service to make user 123's profile", func() bool {
		p, err := f.profiles.Get(context.Background(), "123")
		return err == nil && p.DisplayName == "user"
	})
	code, _, body = f.do(t, "POST", "/events", curlForm, `{"type": "user.registered", "data": {"user_id": "1", "mail": "x"}}`)
	if code != http.StatusBadRequest || !strings.Contains(body, `unknown field \"mail\"`) {
		t.Errorf("POST /events with a misspelt field = %d %s, want 400 naming it", code, body)
	}
}

// With a publish token, publishing and the dead letters need it; reading
// and signing up do not.
func TestPublishToken(t *testing.T) {
	t.Parallel()
	f := setup(t, handler.Options{PublishToken: "s3cret"})
	bearer := []string{"Authorization", "Bearer s3cret"}
	for _, c := range []struct {
		method, path, body string
		header             []string
		status             int
	}{
		{"POST", "/events", seedEvent, nil, 401},
		{"POST", "/events", seedEvent, []string{"Authorization", "Bearer wrong"}, 401},
		{"POST", "/events", seedEvent, bearer, 201},
		{"GET", "/events/deadletters", "", nil, 401},
		{"GET", "/events/deadletters", "", bearer, 200},
		{"GET", "/events?type=user.registered", "", nil, 200},
		{"GET", "/events/stats", "", nil, 200},
		{"POST", "/users", `{"email": "ada@example.com", "name": "Ada"}`, nil, 201},
	} {
		code, hdr, body := f.do(t, c.method, c.path, curlForm, c.body, c.header...)
		if code != c.status {
			t.Errorf("%s %s with %v = %d %s, want %d", c.method, c.path, c.header, code, body, c.status)
		}
		if code == 401 && hdr.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("%s %s: 401 without WWW-Authenticate: Bearer", c.method, c.path)
		}
	}
}

// Close ends the event streams, which http.Server.Shutdown does not.
func TestCloseEndsStreams(t *testing.T) {
	t.Parallel()
	f := setup(t, handler.Options{})
	resp, err := f.srv.Client().Get(f.srv.URL + "/events/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events/stream = %d", resp.StatusCode)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		done <- err
	}()
	f.api.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end after Close")
	}
}
