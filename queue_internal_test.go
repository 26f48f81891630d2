package event

import "testing"

// TestWorkQueueRing checks the ring's order across wrapping, growth past
// its limit, and the shrink after a burst.
func TestWorkQueueRing(t *testing.T) {
	var q workQueue[int]
	q.init(4)
	ds := make([]*delivery[int], 200)
	for i := range ds {
		ds[i] = &delivery[int]{seq: uint64(i)}
	}
	next := 0 // the next delivery to push
	want := 0 // the next delivery pop should return
	pop := func() {
		t.Helper()
		if got := q.pop(); got != ds[want%len(ds)] {
			t.Fatalf("pop returned delivery %d, want %d", got.seq, want%len(ds))
		}
		want++
	}
	// Wrap the ring of minRing slots several times, a few events deep.
	for range 5 * minRing {
		for range 3 {
			q.push(ds[next%len(ds)])
			next++
		}
		for range 3 {
			pop()
		}
	}
	// A burst past the limit grows the ring, and keeps the order.
	want, next = 0, 0
	for range 100 {
		q.push(ds[next])
		next++
	}
	if len(q.buf) < 100 {
		t.Fatalf("ring of %d slots holds 100 events", len(q.buf))
	}
	for q.n > 0 {
		pop()
	}
	if want != 100 {
		t.Fatalf("%d events came out of 100", want)
	}
	if len(q.buf) != max(4, minRing) {
		t.Errorf("the emptied ring kept %d slots, want %d", len(q.buf), max(4, minRing))
	}
}
