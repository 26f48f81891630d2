package eventhttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// errorBody is the JSON of every error answer: what was wrong, and where.
type errorBody struct {
	Error string `json:"error"`
	// Field is the field of the posted event at fault, Parameter the query
	// parameter and Header the request header.
	Field     string `json:"field,omitempty"`
	Parameter string `json:"parameter,omitempty"`
	Header    string `json:"header,omitempty"`
	// Index is the position of the event at fault in a posted array.
	Index *int `json:"index,omitempty"`
	// Topic is the topic of the event at fault.
	Topic string `json:"topic,omitempty"`
	// For a version conflict: the aggregate and its versions.
	AggregateID     string `json:"aggregate_id,omitempty"`
	ExpectedVersion *int64 `json:"expected_version,omitempty"`
	ActualVersion   *int64 `json:"actual_version,omitempty"`
	// For a partly failed re-drive: how many dead letters succeeded, and
	// why the others failed.
	Redriven *int     `json:"redriven,omitempty"`
	Failures []string `json:"failures,omitempty"`
}

// httpError is an error with the status and JSON body it is answered with.
type httpError struct {
	status int
	body   errorBody
	header [2]string // an extra header, such as WWW-Authenticate
}

func (e *httpError) Error() string { return e.body.Error }

func newError(status int, format string, args ...any) *httpError {
	return &httpError{status: status, body: errorBody{Error: fmt.Sprintf(format, args...)}}
}

func badRequest(format string, args ...any) *httpError {
	return newError(http.StatusBadRequest, format, args...)
}

// badParam is a 400 naming a query parameter.
func badParam(name, format string, args ...any) *httpError {
	e := badRequest("query parameter %s: "+format, append([]any{name}, args...)...)
	e.body.Parameter = name
	return e
}

// classify turns an error from the bus or the store into its answer.
// Errors that are none of the known kinds come from a store that failed
// (a lost connection, a full disk): 503, so that clients retry.
func classify(err error) *httpError {
	var he *httpError
	if errors.As(err, &he) {
		return he
	}
	var vc *store.VersionConflictError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		return newError(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", mb.Limit)
	case errors.As(err, &vc):
		e := newError(http.StatusConflict, "%v", err)
		e.body.AggregateID, e.body.ExpectedVersion, e.body.ActualVersion = vc.AggregateID, &vc.Expected, &vc.Actual
		return e
	case errors.Is(err, store.ErrVersionConflict), errors.Is(err, store.ErrDuplicateID):
		return newError(http.StatusConflict, "%v", err)
	case errors.Is(err, store.ErrNotFound):
		return newError(http.StatusNotFound, "%v", err)
	case errors.Is(err, store.ErrInvalidTopic), errors.Is(err, store.ErrInvalidRecord),
		errors.Is(err, store.ErrInvalidName), errors.Is(err, store.ErrInvalidCursor):
		return badRequest("%v", err)
	case errors.Is(err, store.ErrCursorExpired):
		return newError(http.StatusGone, "%v", err)
	case errors.Is(err, event.ErrQueueFull):
		e := newError(http.StatusServiceUnavailable, "%v", err)
		e.header = [2]string{"Retry-After", "1"}
		return e
	case errors.Is(err, event.ErrClosed):
		return newError(http.StatusServiceUnavailable, "%v", err)
	}
	// A closed store and a context that ended while the store worked land
	// here too.
	return newError(http.StatusServiceUnavailable, "event store unavailable: %v", err)
}

// marshal is json.Marshal without HTML escaping: answers are served as
// application/json with nosniff, and topic patterns such as user.> read
// better unescaped.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := marshal(v)
	if err != nil {
		// Only our own types are written, and they all marshal.
		status = http.StatusInternalServerError
		data, _ = json.Marshal(errorBody{Error: "eventhttp: encode answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}

func writeError(w http.ResponseWriter, err error) {
	e := classify(err)
	if e.header[0] != "" {
		w.Header().Set(e.header[0], e.header[1])
	}
	writeJSON(w, e.status, e.body)
}
