package eventhttp_test

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/ncore-io/event/eventhttp"
)

// routes lists one request of each route, with its class.
var routes = []struct {
	method, path, body string
	class              eventhttp.Class
}{
	{http.MethodPost, "/events", seedBody, eventhttp.Publish},
	{http.MethodGet, "/events", "", eventhttp.Read},
	{http.MethodGet, "/events/00000000-0000-0000-0000-000000000000", "", eventhttp.Read},
	{http.MethodGet, "/events/stats", "", eventhttp.Read},
	{http.MethodGet, "/events/stream?type=bad..type", "", eventhttp.Read},
	{http.MethodGet, "/events/deadletters", "", eventhttp.Admin},
	{http.MethodPost, "/events/deadletters/mailer/redrive", "", eventhttp.Admin},
	{http.MethodPost, "/events/deadletters/mailer/x/redrive", "", eventhttp.Admin},
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	f := setup(t, eventhttp.WithAuthorizer(eventhttp.AnyOf(
		eventhttp.BearerToken("ops-secret"),
		eventhttp.BearerToken("app-secret", eventhttp.Publish, eventhttp.Read),
	)))
	for _, r := range routes {
		name := r.method + " " + r.path
		for _, auth := range []string{"", "Basic b3BzOnNlY3JldA==", "Bearer", "Bearer wrong", "Bearer ops-secret-and-more"} {
			code, hdr, data := f.do(r.method, r.path, r.body, "Authorization", auth)
			wantError(t, code, hdr, data, http.StatusUnauthorized, "")
			if got := hdr.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("%s with %q: WWW-Authenticate %q", name, auth, got)
			}
		}
		code, hdr, data := f.do(r.method, r.path, r.body, "Authorization", "Bearer app-secret")
		if r.class == eventhttp.Admin {
			wantError(t, code, hdr, data, http.StatusForbidden, "does not allow admin")
		} else if code == http.StatusUnauthorized || code == http.StatusForbidden {
			t.Errorf("%s with the app token: status %d: %s", name, code, data)
		}
		code, _, data = f.do(r.method, r.path, r.body, "Authorization", "bearer ops-secret")
		if code == http.StatusUnauthorized || code == http.StatusForbidden {
			t.Errorf("%s with the ops token: status %d: %s", name, code, data)
		}
	}
	// Refused posts were not published: only the app's and the ops's.
	if n := count(t, f.store); n != 2 {
		t.Errorf("%d events stored, want 2", n)
	}
}

// A class without an authorizer is open; one with is guarded.
func TestAuthorizerPerClass(t *testing.T) {
	t.Parallel()
	f := setup(t, eventhttp.WithAuthorizer(eventhttp.BearerToken("ops-secret"), eventhttp.Admin))
	for _, r := range routes {
		code, _, data := f.do(r.method, r.path, r.body)
		if guarded := code == http.StatusUnauthorized; guarded != (r.class == eventhttp.Admin) {
			t.Errorf("%s %s without credentials: status %d: %s", r.method, r.path, code, data)
		}
	}
}

func TestAuthorizerFunc(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []eventhttp.Class
	f := setup(t, eventhttp.WithAuthorizer(eventhttp.AuthorizerFunc(func(r *http.Request, c eventhttp.Class) error {
		mu.Lock()
		seen = append(seen, c)
		mu.Unlock()
		switch r.Header.Get("X-Role") {
		case "":
			return fmt.Errorf("who are you: %w", eventhttp.ErrUnauthenticated)
		case "reader":
			if c != eventhttp.Read {
				return fmt.Errorf("readers only read: %w", eventhttp.ErrForbidden)
			}
			return nil
		case "broken":
			return errors.New("directory unreachable")
		}
		return nil
	}), eventhttp.Publish, eventhttp.Read))
	code, hdr, data := f.do(http.MethodPost, "/events", seedBody)
	wantError(t, code, hdr, data, http.StatusUnauthorized, "who are you")
	code, hdr, data = f.do(http.MethodPost, "/events", seedBody, "X-Role", "reader")
	wantError(t, code, hdr, data, http.StatusForbidden, "readers only read")
	code, hdr, data = f.do(http.MethodGet, "/events", "", "X-Role", "broken")
	wantError(t, code, hdr, data, http.StatusInternalServerError, "directory unreachable")
	if code, _, data := f.do(http.MethodGet, "/events", "", "X-Role", "reader"); code != http.StatusOK {
		t.Errorf("reader: status %d: %s", code, data)
	}
	want := []eventhttp.Class{eventhttp.Publish, eventhttp.Publish, eventhttp.Read, eventhttp.Read}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("classes %v, want %v", seen, want)
	}
	if n := count(t, f.store); n != 0 {
		t.Errorf("%d events stored", n)
	}
}

func TestBearerTokenPanics(t *testing.T) {
	t.Parallel()
	for name, fn := range map[string]func(){
		"empty token":   func() { eventhttp.BearerToken("") },
		"unknown class": func() { eventhttp.BearerToken("x", eventhttp.Class(9)) },
		"nil in AnyOf":  func() { eventhttp.AnyOf(nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	for c, want := range map[eventhttp.Class]string{eventhttp.Publish: "publish", eventhttp.Read: "read", eventhttp.Admin: "admin", 7: "Class(7)"} {
		if got := c.String(); got != want {
			t.Errorf("%d: %q, want %q", int(c), got, want)
		}
	}
}
