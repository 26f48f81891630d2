package eventhttp_test

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event/eventhttp"
	"github.com/ncore-io/event/store"
)

// sseMessage is one message of an event stream: an event, or a comment.
type sseMessage struct {
	id, event, data, comment string
}

// sseClient reads an event stream.
type sseClient struct {
	t      *testing.T
	msgs   chan sseMessage
	done   chan struct{} // closed when the stream has ended
	cancel context.CancelFunc
}

// openStream opens path and waits for the stream's first comment.
func openStream(t *testing.T, srv *httptest.Server, path string, header ...string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		cancel()
		t.Fatalf("GET %s: status %d, Content-Type %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c := &sseClient{t: t, msgs: make(chan sseMessage, 100), done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(c.done)
		defer close(c.msgs)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var m sseMessage
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				c.msgs <- m
				m = sseMessage{}
			case strings.HasPrefix(line, ":"):
				m.comment = strings.TrimSpace(line[1:])
			default:
				k, v, _ := strings.Cut(line, ": ")
				switch k {
				case "id":
					m.id = v
				case "event":
					m.event = v
				case "data":
					m.data = v
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-c.done
	})
	if m := c.next(); m.comment != "events" {
		t.Fatalf("first message %+v, want the opening comment", m)
	}
	return c
}

// next returns the next message, failing the test if the stream ends or
// nothing comes.
func (c *sseClient) next() sseMessage {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatal("the stream ended")
		}
		return m
	case <-time.After(5 * time.Second):
		c.t.Fatal("no message on the stream")
	}
	return sseMessage{}
}

// nextEvent skips comments.
func (c *sseClient) nextEvent() (sseMessage, eventhttp.Envelope) {
	c.t.Helper()
	for {
		if m := c.next(); m.comment == "" {
			return m, decode[eventhttp.Envelope](c.t, []byte(m.data))
		}
	}
}

// ended waits for the stream to end and returns the comments it sent.
func (c *sseClient) ended() []string {
	c.t.Helper()
	var comments []string
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return comments
			}
			if m.comment != "" {
				comments = append(comments, m.comment)
			}
		case <-timeout:
			c.t.Fatal("the stream did not end")
		}
	}
}

func TestStreamFollowsNewEvents(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.post(`{"type": "user.registered", "data": {"user_id": "old"}}`, http.StatusCreated)
	s := openStream(t, f.srv, "/events/stream")
	posted := decode[eventhttp.Envelope](t, f.post(seedBody, http.StatusCreated))
	m, env := s.nextEvent()
	stored := get[page](f, "/events?after="+get[page](f, "/events?limit=1").Next)
	if m.event != "user.registered" || env.ID != posted.ID || m.id != stored.Events[0].Cursor || env.Cursor != m.id {
		t.Errorf("stream sent %+v (%+v), want the event posted after it opened, with cursor %s", m, env, stored.Events[0].Cursor)
	}
	if !jsonEqual(t, env.Data, posted.Data) || env.Position != posted.Position {
		t.Errorf("envelope %+v, posted %+v", env, posted)
	}
}

func TestStreamFiltersByType(t *testing.T) {
	t.Parallel()
	f := setup(t)
	s := openStream(t, f.srv, "/events/stream?type=order.*")
	f.post(seedBody, http.StatusCreated)
	f.post(`{"type": "order.placed", "data": {"order_id": "1"}}`, http.StatusCreated)
	if m, env := s.nextEvent(); m.event != "order.placed" || env.Type != "order.placed" {
		t.Errorf("got %+v, want only order events", m)
	}
}

// A client that reconnects with Last-Event-ID gets what it missed, then
// what follows, without a gap.
func TestStreamResumes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, u := range []string{"1", "2", "3"} {
		f.post(`{"type": "user.registered", "data": {"user_id": "`+u+`"}}`, http.StatusCreated)
	}
	all := get[page](f, "/events")
	for _, tc := range []struct {
		name   string
		path   string
		header []string
	}{
		{"Last-Event-ID", "/events/stream", []string{"Last-Event-ID", all.Events[0].Cursor}},
		{"after", "/events/stream?after=" + all.Events[0].Cursor, nil},
		{"Last-Event-ID wins", "/events/stream?after=" + all.Events[2].Cursor, []string{"Last-Event-ID", all.Events[0].Cursor}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStream(t, f.srv, tc.path, tc.header...)
			for _, want := range all.Events[1:] {
				if m, env := s.nextEvent(); env.ID != want.ID || m.id != want.Cursor {
					t.Fatalf("got %s (id %s), want %s (id %s)", env.ID, m.id, want.ID, want.Cursor)
				}
			}
			live := decode[eventhttp.Envelope](t, f.post(`{"type": "user.registered", "data": {"user_id": "live"}}`, http.StatusCreated))
			if _, env := s.nextEvent(); env.ID != live.ID {
				t.Errorf("got %s, want the live event %s", env.ID, live.ID)
			}
			all = get[page](f, "/events")
		})
	}
}

func TestStreamKeepAlive(t *testing.T) {
	t.Parallel()
	f := setup(t, eventhttp.KeepAlive(10*time.Millisecond))
	s := openStream(t, f.srv, "/events/stream")
	if m := s.next(); m.comment != "keep-alive" {
		t.Errorf("got %+v, want a keep-alive comment", m)
	}
}

// plainStore is a store with none of the optional interfaces: no
// notifications, no dead letters.
type plainStore struct{ store.Store }

// A store that cannot signal appends is polled.
func TestStreamPollsWithoutNotifier(t *testing.T) {
	t.Parallel()
	s := plainStore{openStore(t)}
	bus := newBus[UserRegistered](t, s)
	srv := serve(t, newHandler(t, bus, eventhttp.PollInterval(5*time.Millisecond)))
	c := openStream(t, srv, "/events/stream")
	if code, _, data := do(t, srv, http.MethodPost, "/events", seedBody); code != http.StatusCreated {
		t.Fatalf("status %d: %s", code, data)
	}
	if m, _ := c.nextEvent(); m.event != "user.registered" {
		t.Errorf("got %+v", m)
	}
}

// With a store that signals appends, a stream does not wait for a poll.
func TestStreamUsesNotifier(t *testing.T) {
	t.Parallel()
	f := setup(t, eventhttp.PollInterval(time.Hour))
	s := openStream(t, f.srv, "/events/stream")
	// Appended behind the bus's back, so only the store can tell.
	if err := f.store.Append(t.Context(), []store.Record{{ID: "e-1", Topic: "user.registered", Time: time.Now(), ContentType: "application/json", Payload: []byte(`{}`)}}); err != nil {
		t.Fatal(err)
	}
	if _, env := s.nextEvent(); env.ID != "e-1" {
		t.Errorf("got %+v", env)
	}
}

func TestStreamEnds(t *testing.T) {
	t.Parallel()
	t.Run("client leaves", func(t *testing.T) {
		f := setup(t)
		s := openStream(t, f.srv, "/events/stream")
		s.cancel()
		<-s.done
		closed := make(chan struct{})
		go func() { f.h.Close(); close(closed) }() // Close waits for open streams
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("the stream is still running after its client left")
		}
	})
	t.Run("handler closed", func(t *testing.T) {
		f := setup(t)
		s := openStream(t, f.srv, "/events/stream")
		f.h.Close()
		s.ended()
		code, hdr, data := f.do(http.MethodGet, "/events/stream", "")
		wantError(t, code, hdr, data, http.StatusServiceUnavailable, "closed")
		f.post(seedBody, http.StatusCreated) // the other routes still work
	})
	t.Run("store closed", func(t *testing.T) {
		f := setup(t)
		s := openStream(t, f.srv, "/events/stream")
		f.store.Close()
		if comments := s.ended(); len(comments) == 0 || !strings.Contains(comments[len(comments)-1], "store closed") {
			t.Errorf("comments %q, want the reason last", comments)
		}
	})
}

func TestStreamBadRequests(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct {
		path, header, value string
		param, substr       string
	}{
		{path: "/events/stream?type=user..x", param: "type", substr: "empty segment"},
		{path: "/events/stream?after=bogus", param: "after", substr: "invalid cursor"},
		{path: "/events/stream?since=2024-01-01T00:00:00Z", param: "since", substr: "unknown"},
		{path: "/events/stream", header: "Last-Event-ID", value: "bogus", substr: "invalid cursor"},
	} {
		var hd []string
		if tc.header != "" {
			hd = []string{tc.header, tc.value}
		}
		code, hdr, data := f.do(http.MethodGet, tc.path, "", hd...)
		e := wantError(t, code, hdr, data, http.StatusBadRequest, tc.substr)
		if e.Parameter != tc.param || e.Header != tc.header {
			t.Errorf("%s: error %+v: want parameter %q, header %q", tc.path, e, tc.param, tc.header)
		}
	}
}

// HEAD answers the stream's headers and returns, rather than following
// the log for a client that reads no body.
func TestStreamHead(t *testing.T) {
	t.Parallel()
	f := setup(t)
	rec := httptest.NewRecorder()
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		f.h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/events/stream", nil))
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		f.h.Close()
		<-returned
		t.Fatal("HEAD kept streaming")
	}
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/event-stream" {
		t.Errorf("HEAD: status %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}
