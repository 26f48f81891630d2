package eventhttp

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// deadLetterRecord is a dead letter as the store keeps it.
type deadLetterRecord = store.DeadLetterRecord

// deadLetter is the JSON form of a dead letter.
type deadLetter struct {
	Subscription string    `json:"subscription"`
	Error        string    `json:"error"`
	Attempts     int       `json:"attempts"`
	Time         time.Time `json:"time"`
	Event        Envelope  `json:"event"`
}

type deadLetterPage struct {
	DeadLetters []deadLetter `json:"dead_letters"`
}

type redriven struct {
	Redriven int `json:"redriven"`
}

// deadLetters checks that the store keeps dead letters, so that a store
// without them is told apart from a failing one.
func (h *Handler) deadLetters() error {
	if _, ok := h.store.(store.DeadLetterStore); !ok {
		return newError(http.StatusNotImplemented, "the event store (%T) does not keep dead letters", h.store)
	}
	return nil
}

func (h *Handler) listDeadLetters(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkParams(q, "subscription", "limit"); err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	if err := h.deadLetters(); err != nil {
		return err
	}
	sub := q.Get("subscription")
	list, err := h.bus.deadLetters(r.Context(), sub, limit)
	if err != nil {
		if errors.Is(err, store.ErrInvalidName) {
			return badParam("subscription", "%v", err)
		}
		return err
	}
	p := deadLetterPage{DeadLetters: make([]deadLetter, len(list))}
	for i := range list {
		d := &list[i]
		p.DeadLetters[i] = deadLetter{Subscription: d.Subscription, Error: d.Error, Attempts: d.Attempts, Time: d.Time.UTC(), Event: envelope(&d.Record)}
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (h *Handler) redrive(w http.ResponseWriter, r *http.Request) error {
	if err := checkParams(r.URL.Query()); err != nil {
		return err
	}
	if err := h.deadLetters(); err != nil {
		return err
	}
	sub, id := r.PathValue("subscription"), r.PathValue("id")
	if err := h.bus.redrive(r.Context(), sub, id); err != nil {
		return redriveError(err, nil, nil)
	}
	writeJSON(w, http.StatusOK, redriven{Redriven: 1})
	return nil
}

func (h *Handler) redriveAll(w http.ResponseWriter, r *http.Request) error {
	if err := checkParams(r.URL.Query()); err != nil {
		return err
	}
	if err := h.deadLetters(); err != nil {
		return err
	}
	n, err := h.bus.redriveAll(r.Context(), r.PathValue("subscription"))
	if err != nil {
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		return redriveError(err, &n, errs)
	}
	writeJSON(w, http.StatusOK, redriven{Redriven: n})
	return nil
}

// redriveError answers a failed re-drive, with how many dead letters
// succeeded (n, for a re-drive of all) and why the others failed. A dead
// letter that does not exist is a 404 and a closed store or bus a 503; any
// other failure (the handler failed again, the subscription is not
// registered on this bus, the store failed) is a 500.
func redriveError(err error, n *int, errs []error) error {
	var e *httpError
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalidName),
		errors.Is(err, store.ErrClosed), errors.Is(err, event.ErrClosed),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		e = classify(err)
	default:
		e = newError(http.StatusInternalServerError, "redrive failed: %v", err)
	}
	e.body.Redriven = n
	for _, err := range errs {
		e.body.Failures = append(e.body.Failures, err.Error())
	}
	return e
}
