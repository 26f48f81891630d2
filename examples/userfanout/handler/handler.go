// Package handler serves the service's HTTP API:
//
//	POST /users       {"email": "...", "name": "..."}: register a user; 201 with the user
//	GET  /users/{id}  the user, with the profile the profile service made (null until then)
//	     /events, /events/…  the event API of package eventhttp: publish, list, stream, stats, dead letters
//
// Every error is JSON: {"error": "what was wrong", "field": "the field at fault"}.
package handler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventhttp"
	"github.com/ncore-io/event/examples/userfanout/data/repository"
	"github.com/ncore-io/event/examples/userfanout/service"
)

// maxUserBody bounds the body of POST /users.
const maxUserBody = 64 << 10

// Options configure the handler.
type Options struct {
	// PublishToken, when set, is the bearer token that POST /events and
	// the dead-letter routes under /events/deadletters require. Reading
	// events and stats stays open, and so does POST /users: signing up
	// needs no token. Empty leaves every route open.
	PublishToken string
	// Logger receives the errors that are not the client's; nil logs
	// nothing.
	Logger *slog.Logger
}

// Handler is the service's http.Handler. It is safe for concurrent use.
type Handler struct {
	mux      *http.ServeMux
	events   *eventhttp.Handler
	users    *service.UserService
	profiles *service.Profile
	log      *slog.Logger
}

// New returns the handler of the service's routes. bus must have a store:
// the event API reads it.
func New(bus *event.Bus[any], users *service.UserService, profiles *service.Profile, opts Options) (*Handler, error) {
	apiOpts := []eventhttp.Option{
		// Posted data of user.registered decodes into the type the
		// services subscribe with, so it reaches their handlers.
		eventhttp.Type[service.UserRegistered](service.TopicUserRegistered),
	}
	if opts.PublishToken != "" {
		apiOpts = append(apiOpts, eventhttp.WithAuthorizer(
			eventhttp.BearerToken(opts.PublishToken, eventhttp.Publish, eventhttp.Admin),
			eventhttp.Publish, eventhttp.Admin))
	}
	events, err := eventhttp.New(bus, apiOpts...)
	if err != nil {
		return nil, fmt.Errorf("handler: %w", err)
	}
	h := &Handler{mux: http.NewServeMux(), events: events, users: users, profiles: profiles, log: opts.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.mux.HandleFunc("POST /users", h.createUser)
	h.mux.HandleFunc("GET /users/{id}", h.getUser)
	h.mux.HandleFunc("/users", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "", "method %s is not allowed on /users; allowed: POST", r.Method)
	})
	h.mux.HandleFunc("/users/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "", "method %s is not allowed on %s; allowed: GET, HEAD", r.Method, r.URL.Path)
	})
	h.mux.Handle("/events", events)
	h.mux.Handle("/events/", events)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "", "no route for %s %s; the routes are POST /users, GET /users/{id} and /events", r.Method, r.URL.Path)
	})
	return h, nil
}

// ServeHTTP serves the routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Close ends the event streams (GET /events/stream), which
// http.Server.Shutdown does not: register it with
// http.Server.RegisterOnShutdown.
func (h *Handler) Close() { h.events.Close() }

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) {
	// curl -d sends application/x-www-form-urlencoded unless told
	// otherwise; take it as JSON, as the event API does.
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "application/x-www-form-urlencoded") {
			writeError(w, http.StatusUnsupportedMediaType, "", "Content-Type %q is not JSON; send application/json", ct)
			return
		}
	}
	var req service.CreateUserRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxUserBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "", "body larger than %d bytes", maxUserBody)
			return
		}
		if errors.Is(err, io.EOF) {
			err = errors.New(`empty body; send {"email": "...", "name": "..."}`)
		}
		writeError(w, http.StatusBadRequest, "", "%s", strings.TrimPrefix(err.Error(), "json: "))
		return
	}
	u, err := h.users.CreateUser(r.Context(), req)
	var bad *service.InputError
	switch {
	case errors.As(err, &bad):
		writeError(w, http.StatusBadRequest, bad.Field, "%s", bad.Error())
		return
	case errors.Is(err, repository.ErrEmailTaken):
		writeError(w, http.StatusConflict, "email", "%s is already registered", strings.TrimSpace(req.Email))
		return
	case err != nil:
		h.serverError(w, r, err)
		return
	}
	w.Header().Set("Location", "/users/"+u.ID)
	writeJSON(w, http.StatusCreated, u)
}

// userView is the answer of GET /users/{id}.
type userView struct {
	repository.User
	Profile *service.UserProfile `json:"profile"` // null until the profile service made it
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := h.users.GetUser(r.Context(), r.PathValue("id"))
	if errors.Is(err, repository.ErrNotFound) {
		writeError(w, http.StatusNotFound, "", "no user %s", r.PathValue("id"))
		return
	}
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	v := userView{User: u}
	p, err := h.profiles.Get(r.Context(), u.ID)
	switch {
	case err == nil:
		v.Profile = &p
	case !errors.Is(err, service.ErrNoProfile):
		h.serverError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (h *Handler) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		writeError(w, http.StatusServiceUnavailable, "", "the request ended before it was done: %v", r.Context().Err())
		return
	}
	h.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "error", err)
	writeError(w, http.StatusInternalServerError, "", "internal error; the server's log says more")
}

type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, status int, field, format string, args ...any) {
	writeJSON(w, status, errorBody{Error: fmt.Sprintf(format, args...), Field: field})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
