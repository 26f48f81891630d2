package eventhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/ncore-io/event/store"
)

// MaxBatchLen is the most events one POST /events may publish as a batch.
const MaxBatchLen = 1000

// batchAnswer is the answer to a batch: its events as stored, in the order
// posted.
type batchAnswer struct {
	Events []Envelope `json:"events"`
}

// publishBatch publishes msgs atomically, all or none, and answers the
// stored envelopes: 201, or 200 for a batch whose client-given IDs are
// all stored already.
func (h *Handler) publishBatch(w http.ResponseWriter, ctx context.Context, msgs []message) error {
	if len(msgs) > MaxBatchLen {
		return badRequest("a batch holds at most %d events, got %d", MaxBatchLen, len(msgs))
	}
	first := make(map[string]int, len(msgs))
	for i := range msgs {
		id := msgs[i].id.String()
		if j, dup := first[id]; dup {
			e := badRequest("event %d: id %s is event %d's too; the events of a batch need their own", i, id, j)
			e.body.Index, e.body.Field = &i, "id"
			return e
		}
		first[id] = i
	}
	if done, err := h.answerStoredBatch(w, ctx, msgs); done || err != nil {
		return err
	}
	if err := h.bus.publishBatch(ctx, msgs); err != nil {
		if errors.Is(err, store.ErrDuplicateID) {
			// A concurrent retry stored it first.
			if done, err := h.answerStoredBatch(w, ctx, msgs); done || err != nil {
				return err
			}
		}
		return err
	}
	a := batchAnswer{Events: make([]Envelope, len(msgs))}
	for i := range msgs {
		m := &msgs[i]
		rec, err := h.store.Load(ctx, m.id.String())
		if err != nil {
			a.Events[i] = m.unread()
			continue
		}
		a.Events[i] = envelope(&rec)
	}
	writeJSON(w, http.StatusCreated, a)
	return nil
}

// answerStoredBatch answers 200 with the stored events of a batch posted
// again, if it was stored before; done reports whether it answered. A batch
// is stored whole or not at all, so one whose events are stored only in
// part is not the same batch: 409.
func (h *Handler) answerStoredBatch(w http.ResponseWriter, ctx context.Context, msgs []message) (done bool, err error) {
	var stored []Envelope
	fresh := -1 // an event that is not stored
	for i := range msgs {
		m := &msgs[i]
		if !m.idempotent {
			fresh = i
			continue
		}
		rec, err := h.store.Load(ctx, m.id.String())
		if errors.Is(err, store.ErrNotFound) {
			fresh = i
			continue
		}
		if err != nil {
			return false, err
		}
		if !m.sameAs(&rec) {
			e := newError(http.StatusConflict, "event %d: event %s is stored already with other content: a retry (same id or Idempotency-Key) must repeat the original batch", i, m.id)
			e.body.Index, e.body.Topic = &i, m.topic
			return false, e
		}
		stored = append(stored, envelope(&rec))
	}
	switch {
	case len(stored) == 0:
		return false, nil
	case fresh >= 0:
		e := newError(http.StatusConflict, "event %d is not stored but others of the batch are: a retried batch must repeat the original, with every event's id (or an Idempotency-Key)", fresh)
		e.body.Index = &fresh
		return false, e
	}
	writeJSON(w, http.StatusOK, batchAnswer{Events: stored})
	return true, nil
}

// batchError names the event of a batch that a check refused.
func batchError(err error, i int) error {
	e := classify(err)
	e.body.Index = &i
	e.body.Error = fmt.Sprintf("event %d: %s", i, e.body.Error)
	return e
}
