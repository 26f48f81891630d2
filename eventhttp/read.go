package eventhttp

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ncore-io/event/store"
)

// Page sizes of GET /events and GET /events/deadletters.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

// maxReadsPerPage bounds the store reads behind one page of GET /events.
// A filtered store read looks at part of the log at a time and may come
// back short; reading on fills the page, and the bound keeps one request's
// work in proportion to its page however rare the matches are.
const maxReadsPerPage = 10

// page is the answer of GET /events.
type page struct {
	Events []Envelope `json:"events"`
	// Next is the cursor to pass as after= for the next page.
	Next string `json:"next"`
}

// checkParams refuses query parameters other than known, and repeated
// ones: a misspelt filter must not silently list everything.
func checkParams(q url.Values, known ...string) error {
	for name, vals := range q {
		if !slices.Contains(known, name) {
			if len(known) == 0 {
				return badParam(name, "unknown; this route takes no query parameters")
			}
			return badParam(name, "unknown; this route takes %s", strings.Join(known, ", "))
		}
		if len(vals) > 1 {
			return badParam(name, "given %d times", len(vals))
		}
	}
	return nil
}

// limitParam reads the limit parameter: [DefaultPageLimit] if absent, at
// most [MaxPageLimit].
func limitParam(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return DefaultPageLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxPageLimit {
		return 0, badParam("limit", "want a number from 1 to %d, got %q", MaxPageLimit, s)
	}
	return n, nil
}

// topicParam reads the type parameter, a topic pattern.
func topicParam(q url.Values) (string, error) {
	t := q.Get("type")
	if t == "" {
		return "", nil
	}
	if err := store.ValidatePattern(t); err != nil {
		return "", badParam("type", "%v", err)
	}
	return t, nil
}

// cursorError names the parameter or header that held a cursor the store
// refused.
func cursorError(err error, param, header string) error {
	if !errors.Is(err, store.ErrInvalidCursor) && !errors.Is(err, store.ErrCursorExpired) {
		return err
	}
	e := classify(err)
	e.body.Parameter, e.body.Header = param, header
	return e
}

func (h *Handler) listEvents(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkParams(q, "aggregate_id", "type", "kind", "since", "after", "limit"); err != nil {
		return err
	}
	query := store.Query{AggregateID: q.Get("aggregate_id"), Kind: q.Get("kind"), After: store.Cursor(q.Get("after"))}
	var err error
	if query.Topic, err = topicParam(q); err != nil {
		return err
	}
	if s := q.Get("since"); s != "" {
		if query.Since, err = time.Parse(time.RFC3339, s); err != nil {
			return badParam("since", "want an RFC 3339 time such as 2024-01-01T00:00:00Z, got %q", s)
		}
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	p := page{Events: []Envelope{}}
	for range maxReadsPerPage {
		query.Limit = limit - len(p.Events)
		recs, next, err := h.store.Read(r.Context(), query)
		if err != nil {
			return cursorError(err, "after", "")
		}
		for i := range recs {
			p.Events = append(p.Events, envelope(&recs[i]))
		}
		moved := next != query.After
		query.After = next
		if !moved || len(p.Events) >= limit {
			break
		}
	}
	p.Next = string(query.After)
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (h *Handler) getEvent(w http.ResponseWriter, r *http.Request) error {
	if err := checkParams(r.URL.Query()); err != nil {
		return err
	}
	id := r.PathValue("id")
	rec, err := h.store.Load(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return newError(http.StatusNotFound, "no event %s", id)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, envelope(&rec))
	return nil
}

func (h *Handler) getStats(w http.ResponseWriter, r *http.Request) error {
	if err := checkParams(r.URL.Query()); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, h.bus.stats())
	return nil
}
