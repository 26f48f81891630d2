package eventhttp_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventhttp"
)

type deadLetterPage struct {
	DeadLetters []struct {
		Subscription string             `json:"subscription"`
		Error        string             `json:"error"`
		Attempts     int                `json:"attempts"`
		Event        eventhttp.Envelope `json:"event"`
	} `json:"dead_letters"`
}

type redriven struct {
	Redriven int `json:"redriven"`
}

// failing sets up a subscription "mailer" that fails while the returned
// flag is set, and dead-letters two user.registered events with it.
func failing(t *testing.T, f *fixture) (fail *atomic.Bool, ids []string) {
	t.Helper()
	fail = new(atomic.Bool)
	fail.Store(true)
	_, err := event.Subscribe(f.bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		if fail.Load() {
			return errors.New("smtp: connection refused")
		}
		return nil
	}, event.Name("mailer"), event.Sync())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		ids = append(ids, decode[eventhttp.Envelope](t, f.post(seedBody, http.StatusCreated)).ID)
	}
	return fail, ids
}

func TestDeadLettersList(t *testing.T) {
	t.Parallel()
	f := setup(t)
	_, ids := failing(t, f)
	for _, path := range []string{"/events/deadletters?subscription=mailer", "/events/deadletters"} {
		p := get[deadLetterPage](f, path)
		if len(p.DeadLetters) != 2 {
			t.Fatalf("%s: %d dead letters, want 2", path, len(p.DeadLetters))
		}
		d := p.DeadLetters[0]
		if d.Subscription != "mailer" || d.Error != "smtp: connection refused" || d.Attempts != 1 ||
			d.Event.ID != ids[0] || d.Event.Type != "user.registered" || !jsonEqual(t, d.Event.Data, []byte(`{"user_id": "123", "email": "user@example.com"}`)) {
			t.Errorf("%s: dead letter %+v", path, d)
		}
	}
	if p := get[deadLetterPage](f, "/events/deadletters?subscription=mailer&limit=1"); len(p.DeadLetters) != 1 {
		t.Errorf("limit=1 gave %d dead letters", len(p.DeadLetters))
	}
	if p := get[deadLetterPage](f, "/events/deadletters?subscription=billing"); p.DeadLetters == nil || len(p.DeadLetters) != 0 {
		t.Errorf("another subscription: %+v, want an empty list", p)
	}
	for _, tc := range []struct{ query, param string }{
		{"limit=0", "limit"},
		{"subscription=a%00b", "subscription"},
		{"sub=mailer", "sub"},
	} {
		code, hdr, data := f.do(http.MethodGet, "/events/deadletters?"+tc.query, "")
		if e := wantError(t, code, hdr, data, http.StatusBadRequest, tc.param); e.Parameter != tc.param {
			t.Errorf("?%s: parameter %q", tc.query, e.Parameter)
		}
	}
}

func TestRedriveOne(t *testing.T) {
	t.Parallel()
	f := setup(t)
	fail, ids := failing(t, f)
	path := "/events/deadletters/mailer/" + ids[0] + "/redrive"
	code, hdr, data := f.do(http.MethodPost, path, "")
	wantError(t, code, hdr, data, http.StatusInternalServerError, "handler failed again")

	fail.Store(false)
	code, _, data = f.do(http.MethodPost, path, "")
	if code != http.StatusOK || decode[redriven](t, data).Redriven != 1 {
		t.Fatalf("status %d: %s", code, data)
	}
	if p := get[deadLetterPage](f, "/events/deadletters?subscription=mailer"); len(p.DeadLetters) != 1 || p.DeadLetters[0].Event.ID != ids[1] {
		t.Errorf("left %+v, want only the other dead letter", p)
	}
	code, hdr, data = f.do(http.MethodPost, path, "")
	wantError(t, code, hdr, data, http.StatusNotFound, "not found")
	code, hdr, data = f.do(http.MethodPost, "/events/deadletters/nobody/"+ids[1]+"/redrive", "")
	wantError(t, code, hdr, data, http.StatusNotFound, "not found")
}

func TestRedriveAll(t *testing.T) {
	t.Parallel()
	f := setup(t)
	fail, _ := failing(t, f)
	code, hdr, data := f.do(http.MethodPost, "/events/deadletters/mailer/redrive", "")
	e := wantError(t, code, hdr, data, http.StatusInternalServerError, "handler failed again")
	if e.Redriven == nil || *e.Redriven != 0 || len(e.Failures) != 2 {
		t.Errorf("error %+v: want 0 redriven and 2 failures", e)
	}
	fail.Store(false)
	code, _, data = f.do(http.MethodPost, "/events/deadletters/mailer/redrive", "")
	if code != http.StatusOK || decode[redriven](t, data).Redriven != 2 {
		t.Fatalf("status %d: %s", code, data)
	}
	if p := get[deadLetterPage](f, "/events/deadletters"); len(p.DeadLetters) != 0 {
		t.Errorf("%d dead letters left", len(p.DeadLetters))
	}
	code, _, data = f.do(http.MethodPost, "/events/deadletters/mailer/redrive", "")
	if code != http.StatusOK || decode[redriven](t, data).Redriven != 0 {
		t.Errorf("nothing to redrive: status %d: %s", code, data)
	}
}

func TestDeadLettersUnavailable(t *testing.T) {
	t.Parallel()
	t.Run("store keeps none", func(t *testing.T) {
		bus := newBus[UserRegistered](t, plainStore{openStore(t)})
		srv := serve(t, newHandler(t, bus))
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/events/deadletters"},
			{http.MethodPost, "/events/deadletters/mailer/redrive"},
			{http.MethodPost, "/events/deadletters/mailer/x/redrive"},
		} {
			code, hdr, data := do(t, srv, r.method, r.path, "")
			wantError(t, code, hdr, data, http.StatusNotImplemented, "does not keep dead letters")
		}
	})
	t.Run("store closed", func(t *testing.T) {
		f := setup(t)
		_, ids := failing(t, f)
		f.store.Close()
		for _, r := range []struct{ method, path string }{
			{http.MethodGet, "/events/deadletters"},
			{http.MethodPost, "/events/deadletters/mailer/redrive"},
			{http.MethodPost, "/events/deadletters/mailer/" + ids[0] + "/redrive"},
		} {
			code, hdr, data := f.do(r.method, r.path, "")
			wantError(t, code, hdr, data, http.StatusServiceUnavailable, "store closed")
		}
	})
}
