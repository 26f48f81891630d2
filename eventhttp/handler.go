package eventhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// Handler serves the HTTP API of one bus (see the package documentation for
// its routes). It is an [http.Handler] for the paths /events and /events/…,
// and is safe for concurrent use. Create one with [New]; end its event
// streams with [Handler.Close].
type Handler struct {
	cfg   config
	bus   backend
	store store.Store
	mux   *http.ServeMux

	mu      sync.Mutex
	closed  bool
	done    chan struct{} // closed by Close: streams end
	streams sync.WaitGroup
}

// backend is what the handler needs of a Bus[T], without its type
// parameter.
type backend interface {
	// decode decodes the data posted for topic into the payload to
	// publish, a T.
	decode(topic string, data []byte) (any, error)
	publish(ctx context.Context, topic string, payload any, opts []event.PublishOption) error
	// publishBatch publishes msgs atomically.
	publishBatch(ctx context.Context, msgs []message) error
	stats() event.Stats
	deadLetters(ctx context.Context, subscription string, limit int) ([]deadLetterRecord, error)
	redrive(ctx context.Context, subscription, eventID string) error
	redriveAll(ctx context.Context, subscription string) (int, error)
}

// New returns a handler serving bus, which must have a store
// (event.WithStore): events are read back from it.
//
// New checks the options: each [Type] must have a valid pattern, given
// once, and a type that the bus can carry (T itself, or a type implementing
// an interface T), and [RawJSON] needs a bus of an interface type that
// json.RawMessage implements.
func New[T any](bus *event.Bus[T], opts ...Option) (*Handler, error) {
	if bus == nil {
		return nil, errors.New("eventhttp: new: nil bus")
	}
	st := bus.Store()
	if st == nil {
		return nil, fmt.Errorf("eventhttp: new: %w", event.ErrNoStore)
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	switch {
	case cfg.authErr != nil:
		return nil, cfg.authErr
	case cfg.maxBody <= 0:
		return nil, fmt.Errorf("eventhttp: new: MaxBodySize must be positive, got %d", cfg.maxBody)
	case cfg.keepAlive <= 0:
		return nil, fmt.Errorf("eventhttp: new: KeepAlive must be positive, got %v", cfg.keepAlive)
	case cfg.pollInterval <= 0:
		return nil, fmt.Errorf("eventhttp: new: PollInterval must be positive, got %v", cfg.pollInterval)
	}
	b := &busBackend[T]{bus: bus, raw: cfg.raw, exact: map[string]reflect.Type{}}
	tt := reflect.TypeFor[T]()
	if tt.Kind() != reflect.Interface {
		b.fallback = tt
	}
	if cfg.raw {
		if tt.Kind() != reflect.Interface || !reflect.TypeFor[json.RawMessage]().Implements(tt) {
			return nil, fmt.Errorf("eventhttp: new: RawJSON: a bus of %v cannot carry json.RawMessage", tt)
		}
	}
	seen := map[string]bool{}
	for _, reg := range cfg.types {
		if err := store.ValidatePattern(reg.pattern); err != nil {
			return nil, fmt.Errorf("eventhttp: new: Type[%v]: %w", reg.typ, err)
		}
		if seen[reg.pattern] {
			return nil, fmt.Errorf("eventhttp: new: Type[%v]: pattern %q has a type already", reg.typ, reg.pattern)
		}
		seen[reg.pattern] = true
		if reg.typ.Kind() == reflect.Interface {
			return nil, fmt.Errorf("eventhttp: new: Type[%v] for %q: data cannot be decoded into an interface; register a concrete type, or use RawJSON", reg.typ, reg.pattern)
		}
		if !reg.typ.AssignableTo(tt) {
			return nil, fmt.Errorf("eventhttp: new: Type[%v] for %q: a bus of %v cannot carry a %v", reg.typ, reg.pattern, tt, reg.typ)
		}
		if store.IsLiteral(reg.pattern) {
			b.exact[reg.pattern] = reg.typ
		} else {
			b.patterns = append(b.patterns, reg)
		}
	}
	h := &Handler{cfg: cfg, bus: b, store: st, done: make(chan struct{})}
	h.routes()
	return h, nil
}

// ServeHTTP serves the routes under /events. Mount the handler for both
// "/events" and "/events/"; to serve it under a prefix, strip the prefix
// first (see the package documentation).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if hd, pattern := h.mux.Handler(r); pattern == "" {
		// No route: the mux answers 404, or 405 with an Allow header, in
		// plain text. Answer the same in JSON.
		rec := &statusRecorder{header: http.Header{}}
		hd.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
			writeError(w, newError(http.StatusMethodNotAllowed, "method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow))
			return
		}
		writeError(w, newError(http.StatusNotFound, "no route for %s %s", r.Method, r.URL.Path))
		return
	}
	h.mux.ServeHTTP(w, r)
}

// statusRecorder takes the mux's answer for a request without a route.
type statusRecorder struct{ header http.Header }

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (s *statusRecorder) WriteHeader(int)             {}

// Close ends the handler's event streams and waits for them to return.
// Streams opened afterwards are refused with 503; the other routes keep
// working. Close is safe to call more than once. Its signature fits
// [http.Server.RegisterOnShutdown], since Shutdown does not end streams
// itself:
//
//	srv.RegisterOnShutdown(h.Close)
func (h *Handler) Close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	h.mu.Unlock()
	h.streams.Wait()
}

func (h *Handler) routes() {
	h.mux = http.NewServeMux()
	for _, rt := range []struct {
		pattern string
		class   Class
		serve   func(http.ResponseWriter, *http.Request) error
	}{
		{"POST /events", Publish, h.postEvents},
		{"GET /events", Read, h.listEvents},
		{"GET /events/{id}", Read, h.getEvent},
		{"GET /events/stats", Read, h.getStats},
		{"GET /events/stream", Read, h.stream},
		{"GET /events/deadletters", Admin, h.listDeadLetters},
		{"POST /events/deadletters/{subscription}/redrive", Admin, h.redriveAll},
		{"POST /events/deadletters/{subscription}/{id}/redrive", Admin, h.redrive},
	} {
		h.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			// Authorization comes first: nothing of the request is read
			// for a client that may not use the route.
			err := h.authorize(r, rt.class)
			if err == nil {
				err = rt.serve(w, r)
			}
			if err != nil {
				writeError(w, err)
			}
		})
	}
}

// busBackend is the [backend] of a Bus[T].
type busBackend[T any] struct {
	bus      *event.Bus[T]
	exact    map[string]reflect.Type // by topic
	patterns []typeReg               // in registration order
	fallback reflect.Type            // T, on a bus of a concrete type
	raw      bool
}

// payloadType returns the type that data posted for topic decodes into, or
// nil.
func (b *busBackend[T]) payloadType(topic string) reflect.Type {
	if t, ok := b.exact[topic]; ok {
		return t
	}
	for _, reg := range b.patterns {
		if store.MatchTopic(reg.pattern, topic) {
			return reg.typ
		}
	}
	return b.fallback
}

func (b *busBackend[T]) decode(topic string, data []byte) (any, error) {
	t := b.payloadType(topic)
	if t == nil {
		if b.raw {
			var p T
			// RawJSON checked that a T can hold a json.RawMessage.
			reflect.ValueOf(&p).Elem().Set(reflect.ValueOf(json.RawMessage(bytes.Clone(data))))
			return p, nil
		}
		e := badRequest("no payload type is registered for topic %q (see eventhttp.Type)", topic)
		e.body.Field, e.body.Topic = "type", topic
		return nil, e
	}
	v := reflect.New(t)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v.Interface()); err != nil {
		e := badRequest("data does not fit %v, the payload type of topic %q: %s", t, topic, strings.TrimPrefix(err.Error(), "json: "))
		e.body.Field, e.body.Topic = "data", topic
		return nil, e
	}
	var p T
	reflect.ValueOf(&p).Elem().Set(v.Elem())
	return p, nil
}

func (b *busBackend[T]) publish(ctx context.Context, topic string, payload any, opts []event.PublishOption) error {
	return b.bus.Publish(ctx, topic, payload.(T), opts...)
}

func (b *busBackend[T]) publishBatch(ctx context.Context, msgs []message) error {
	batch := make([]event.Message[T], len(msgs))
	for i := range msgs {
		batch[i] = event.Message[T]{Topic: msgs[i].topic, Payload: msgs[i].payload.(T), Options: msgs[i].opts}
	}
	return b.bus.PublishBatch(ctx, batch)
}

func (b *busBackend[T]) stats() event.Stats { return b.bus.Stats() }

func (b *busBackend[T]) deadLetters(ctx context.Context, subscription string, limit int) ([]deadLetterRecord, error) {
	return b.bus.DeadLetters(ctx, subscription, limit)
}

func (b *busBackend[T]) redrive(ctx context.Context, subscription, eventID string) error {
	return b.bus.Redrive(ctx, subscription, eventID)
}

func (b *busBackend[T]) redriveAll(ctx context.Context, subscription string) (int, error) {
	return b.bus.RedriveAll(ctx, subscription)
}
