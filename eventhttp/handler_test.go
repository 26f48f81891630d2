package eventhttp_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventhttp"
)

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	anyBus := newBus[any](t, s)
	typed := newBus[UserRegistered](t, s)
	domain := newBus[DomainEvent](t, s)
	noStore, err := event.New[any]()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { noStore.Close(t.Context()) })
	for _, tc := range []struct {
		name   string
		open   func() (*eventhttp.Handler, error)
		substr string
	}{
		{"nil bus", func() (*eventhttp.Handler, error) { return eventhttp.New[any](nil) }, "nil bus"},
		{"no store", func() (*eventhttp.Handler, error) { return eventhttp.New(noStore) }, "no store"},
		{"invalid pattern", func() (*eventhttp.Handler, error) {
			return eventhttp.New(anyBus, eventhttp.Type[UserRegistered]("user..x"))
		}, "empty segment"},
		{"pattern twice", func() (*eventhttp.Handler, error) {
			return eventhttp.New(anyBus, eventhttp.Type[UserRegistered]("user.*"), eventhttp.Type[OrderPlaced]("user.*"))
		}, "has a type already"},
		{"type the bus cannot carry", func() (*eventhttp.Handler, error) {
			return eventhttp.New(typed, eventhttp.Type[OrderPlaced]("order.placed"))
		}, "cannot carry"},
		{"type not implementing the bus's interface", func() (*eventhttp.Handler, error) {
			return eventhttp.New(domain, eventhttp.Type[OrderPlaced]("order.placed"))
		}, "cannot carry"},
		{"interface type", func() (*eventhttp.Handler, error) {
			return eventhttp.New(anyBus, eventhttp.Type[DomainEvent]("user.*"))
		}, "interface"},
		{"raw JSON on a concrete bus", func() (*eventhttp.Handler, error) { return eventhttp.New(typed, eventhttp.RawJSON()) }, "RawJSON"},
		{"raw JSON on a bus it cannot be", func() (*eventhttp.Handler, error) { return eventhttp.New(domain, eventhttp.RawJSON()) }, "RawJSON"},
		{"body size", func() (*eventhttp.Handler, error) { return eventhttp.New(anyBus, eventhttp.MaxBodySize(0)) }, "MaxBodySize"},
		{"keep-alive", func() (*eventhttp.Handler, error) { return eventhttp.New(anyBus, eventhttp.KeepAlive(0)) }, "KeepAlive"},
		{"poll interval", func() (*eventhttp.Handler, error) {
			return eventhttp.New(anyBus, eventhttp.PollInterval(-time.Second))
		}, "PollInterval"},
		{"nil authorizer", func() (*eventhttp.Handler, error) { return eventhttp.New(anyBus, eventhttp.WithAuthorizer(nil)) }, "nil authorizer"},
		{"unknown class", func() (*eventhttp.Handler, error) {
			return eventhttp.New(anyBus, eventhttp.WithAuthorizer(eventhttp.BearerToken("x"), eventhttp.Class(-1)))
		}, "unknown class"},
	} {
		h, err := tc.open()
		if err == nil || !strings.Contains(err.Error(), tc.substr) {
			t.Errorf("%s: New = %v, %v; want an error containing %q", tc.name, h, err, tc.substr)
		}
	}
	// And what it accepts.
	for name, open := range map[string]func() (*eventhttp.Handler, error){
		"raw JSON on a bus of any": func() (*eventhttp.Handler, error) { return eventhttp.New(anyBus, eventhttp.RawJSON()) },
		"a type implementing the bus's": func() (*eventhttp.Handler, error) {
			return eventhttp.New(domain, eventhttp.Type[UserRegistered]("user.*"))
		},
		"a bus of json.RawMessage": func() (*eventhttp.Handler, error) { return eventhttp.New(newBus[json.RawMessage](t, s)) },
	} {
		if _, err := open(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Close is safe to call more than once.
func TestCloseTwice(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.h.Close()
	f.h.Close()
}
