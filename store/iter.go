package store

import (
	"context"
	"errors"
	"iter"
)

// All returns an iterator over the records that match q, in global order,
// from q.After to the end of the log as it is while the iterator runs. It
// pages through s with [Store.Read], q.Limit records at a time, and stops at
// the first error, which it yields with a zero Record. Breaking out of the
// loop stops reading. To resume later, keep the Cursor of the last record
// handled.
//
// All is safe for concurrent use if s is; each call has its own position.
func All(ctx context.Context, s Store, q Query) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		for {
			recs, next, err := s.Read(ctx, q)
			if err != nil {
				yield(Record{}, err)
				return
			}
			for _, r := range recs {
				if !yield(r, nil) {
					return
				}
			}
			// An empty page is the end, unless the store moved the cursor
			// past records that did not match: then there may be more.
			if next == q.After {
				if len(recs) > 0 {
					// Reading on would return the same page forever.
					yield(Record{}, errors.New("store: all: Read returned records without advancing the cursor"))
				}
				return
			}
			q.After = next
		}
	}
}
