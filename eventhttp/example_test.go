package eventhttp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventhttp"
	"github.com/ncore-io/event/store/sqlitestore"
)

// The original design's service: an event posted with its curl call
// reaches a typed handler, and the log and the counters can be read back.
func ExampleNew() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "eventhttp-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	s, err := sqlitestore.Open(ctx, filepath.Join(dir, "events.db"))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	bus, err := event.New[any](event.WithStore(s))
	if err != nil {
		panic(err)
	}
	defer bus.Close(ctx)
	event.Subscribe(bus, "user.registered", func(ctx context.Context, ev event.Event[UserRegistered]) error {
		fmt.Println("welcome email to", ev.Payload.Email)
		return nil
	}, event.Sync())

	h, err := eventhttp.New(bus, eventhttp.Type[UserRegistered]("user.registered"))
	if err != nil {
		panic(err)
	}
	defer h.Close()
	mux := http.NewServeMux()
	mux.Handle("/events", h)
	mux.Handle("/events/", h)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// curl -X POST http://localhost:8080/events -d '{...}'
	resp, err := http.Post(srv.URL+"/events", "application/x-www-form-urlencoded", strings.NewReader(`{
	    "type": "user.registered",
	    "data": {
	      "user_id": "123",
	      "email": "user@example.com"
	    }
	  }`))
	if err != nil {
		panic(err)
	}
	var posted eventhttp.Envelope
	json.NewDecoder(resp.Body).Decode(&posted)
	resp.Body.Close()
	fmt.Println(resp.Status, posted.Type, "at position", posted.Position, string(posted.Data))

	// curl http://localhost:8080/events?type=user.registered
	resp, err = http.Get(srv.URL + "/events?type=user.registered")
	if err != nil {
		panic(err)
	}
	var list struct {
		Events []eventhttp.Envelope `json:"events"`
	}
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	fmt.Println(len(list.Events), "event listed, the same:", list.Events[0].ID == posted.ID)

	// curl http://localhost:8080/events/stats
	resp, err = http.Get(srv.URL + "/events/stats")
	if err != nil {
		panic(err)
	}
	var stats event.Stats
	json.NewDecoder(resp.Body).Decode(&stats)
	resp.Body.Close()
	fmt.Println("published", stats.Published, "processed", stats.Processed, "failed", stats.Failed, "subscribers", stats.Subscribers)
	// Output:
	// welcome email to user@example.com
	// 201 Created user.registered at position 1 {"user_id":"123","email":"user@example.com"}
	// 1 event listed, the same: true
	// published 1 processed 1 failed 0 subscribers map[user.registered:1]
}
