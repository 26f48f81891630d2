package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

func (s suite) testRoundTrip(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()

	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	in := []store.Record{
		{
			ID:          "rt-full",
			Topic:       "order.created",
			Kind:        store.KindIntegration,
			AggregateID: "order-1",
			// Sub-microsecond digits that truncating and rounding both drop.
			Time:        time.Date(2024, 2, 29, 23, 59, 58, 123456400, zone),
			Metadata:    map[string]string{"correlation_id": "c-1", "traceparent": "00-4bf92f3577b34da6-01", "ü": "ß ✓", "empty": ""},
			PayloadType: "shop.OrderCreated",
			ContentType: "application/json",
			Payload:     []byte(`{"order":"1","total":12.5}`),
		},
		{
			ID:          "rt-binary",
			Topic:       "blob.stored",
			Time:        time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC), // before the Unix epoch
			ContentType: "application/octet-stream",
			Payload:     []byte{0, 1, 0, 0xff, 0xfe, 0xc3, 0x28, 'x', 0},
		},
		{ID: "rt-nil", Topic: "t.nil", Kind: store.KindSystem, Time: base},
		{ID: "rt-empty", Topic: "t.empty", Time: base, Payload: []byte{}, Metadata: map[string]string{}},
		{
			ID: "rt-second", Topic: "order.paid", Kind: store.KindDomain, AggregateID: "order-1",
			Time: base.Add(time.Hour), PayloadType: "shop.OrderPaid", ContentType: "application/json", Payload: []byte(`{}`),
		},
	}
	recs := slices.Clone(in)
	if err := st.Append(ctx, recs); err != nil {
		t.Fatalf("Append: %v", err)
	}

	want := slices.Clone(in)
	for i := range want {
		want[i].Time = want[i].Time.Round(time.Microsecond).UTC()
		want[i].Position = recs[i].Position
		want[i].Version = recs[i].Version
	}
	want[0].Time = time.Date(2024, 2, 29, 18, 29, 58, 123456000, time.UTC)
	for i, r := range recs {
		if r.Position <= 0 {
			t.Fatalf("record %s: Position %d written back, want > 0", r.ID, r.Position)
		}
		if i > 0 && r.Position <= recs[i-1].Position {
			t.Fatalf("positions written back are not increasing in batch order: %d then %d", recs[i-1].Position, r.Position)
		}
	}
	if recs[0].Version != 1 || recs[4].Version != 2 {
		t.Fatalf("versions of order-1 written back: %d, %d; want 1, 2", recs[0].Version, recs[4].Version)
	}
	for _, i := range []int{1, 2, 3} {
		if recs[i].Version != 0 {
			t.Fatalf("record %s without aggregate got Version %d, want 0", recs[i].ID, recs[i].Version)
		}
	}

	for _, w := range want {
		got, err := st.Load(ctx, w.ID)
		if err != nil {
			t.Fatalf("Load(%s): %v", w.ID, err)
		}
		checkRecord(t, "Load", got, w)
	}

	agg, err := st.LoadAggregate(ctx, "order-1", 0)
	if err != nil {
		t.Fatalf("LoadAggregate: %v", err)
	}
	checkIDs(t, "LoadAggregate(order-1, 0)", agg, []string{"rt-full", "rt-second"})
	checkRecord(t, "LoadAggregate", agg[0], want[0])
	checkRecord(t, "LoadAggregate", agg[1], want[4])

	got, _, err := st.Read(ctx, store.Query{})
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	checkIDs(t, "Read", got, ids(want))
	for i := range got {
		checkRecord(t, "Read", got[i], want[i])
		if got[i].Cursor == "" {
			t.Errorf("Read: record %s has an empty Cursor", got[i].ID)
		}
	}

	// Each record again, under another ID, appended alone: a driver may
	// store a batch of one record another way.
	version := int64(2) // order-1's, after the batch
	for i, r := range in {
		r.ID += "-alone"
		one := []store.Record{r}
		if err := st.Append(ctx, one); err != nil {
			t.Fatalf("Append(%s) alone: %v", r.ID, err)
		}
		w := want[i]
		w.ID, w.Position = r.ID, one[0].Position
		if w.AggregateID != "" {
			version++
			w.Version = version
		}
		if one[0].Version != w.Version {
			t.Fatalf("record %s appended alone got Version %d, want %d", r.ID, one[0].Version, w.Version)
		}
		got, err := st.Load(ctx, r.ID)
		if err != nil {
			t.Fatalf("Load(%s): %v", r.ID, err)
		}
		checkRecord(t, "Load of a record appended alone", got, w)
	}
}

// testConcurrentVersions appends to one aggregate from many goroutines
// without expectations: the versions must come out dense and unique, and
// each batch's versions consecutive.
func (s suite) testConcurrentVersions(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	const goroutines, batches = 16, 12
	var wg sync.WaitGroup
	results := make([][][]store.Record, goroutines)
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for b := range batches {
				recs := inAggregate("agg", newRecords(fmt.Sprintf("g%d-b%d", g, b), 1+(g+b)%3))
				if err := st.Append(t.Context(), recs); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				results[g] = append(results[g], recs)
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}

	stored, err := st.LoadAggregate(t.Context(), "agg", 0)
	if err != nil {
		t.Fatal(err)
	}
	byID := make(map[string]store.Record, len(stored))
	for i, r := range stored {
		if r.Version != int64(i+1) {
			t.Fatalf("stored versions are not dense: record %d (%s) has version %d", i, r.ID, r.Version)
		}
		byID[r.ID] = r
	}
	checkOrdered(t, "LoadAggregate", stored)
	total := 0
	for _, gr := range results {
		for _, batch := range gr {
			for i, r := range batch {
				total++
				sr, ok := byID[r.ID]
				if !ok {
					t.Fatalf("appended record %s is not in the aggregate", r.ID)
				}
				if sr.Version != r.Version || sr.Position != r.Position {
					t.Fatalf("record %s: Append wrote back version %d position %d, store has %d, %d", r.ID, r.Version, r.Position, sr.Version, sr.Position)
				}
				if i > 0 && r.Version != batch[i-1].Version+1 {
					t.Fatalf("batch %s got versions %d then %d; a batch's versions must be consecutive", idList(batch), batch[i-1].Version, r.Version)
				}
			}
		}
	}
	if total != len(stored) {
		t.Fatalf("appended %d records, aggregate holds %d", total, len(stored))
	}
}

func (s suite) testExpect(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()

	// Version 0: the aggregate has no records yet.
	a := inAggregate("a", newRecords("a", 4))
	mustAppend(t, st, a[:2], store.Expect{AggregateID: "a", Version: 0})
	if a[0].Version != 1 || a[1].Version != 2 {
		t.Fatalf("versions %d, %d; want 1, 2", a[0].Version, a[1].Version)
	}

	conflict := func(what string, err error, agg string, expected, actual int64) {
		t.Helper()
		if !errors.Is(err, store.ErrVersionConflict) {
			t.Fatalf("%s: got %v, want an error matching ErrVersionConflict", what, err)
		}
		var vc *store.VersionConflictError
		if !errors.As(err, &vc) {
			t.Fatalf("%s: error %v is not a *store.VersionConflictError", what, err)
		}
		if vc.AggregateID != agg || vc.Expected != expected || vc.Actual != actual {
			t.Fatalf("%s: conflict %+v, want aggregate %q expected %d actual %d", what, *vc, agg, expected, actual)
		}
	}
	err := st.Append(ctx, a[2:3], store.Expect{AggregateID: "a", Version: 0})
	conflict("Expect a@0 when a is at 2", err, "a", 0, 2)
	err = st.Append(ctx, a[2:3], store.Expect{AggregateID: "a", Version: 3})
	conflict("Expect a@3 when a is at 2", err, "a", 3, 2)
	err = st.Append(ctx, a[2:3], store.Expect{AggregateID: "a", Version: 1})
	conflict("Expect a@1 when a is at 2", err, "a", 1, 2)

	// An expectation on an aggregate outside the batch guards it too.
	other := newRecord("other")
	err = st.Append(ctx, []store.Record{other}, store.Expect{AggregateID: "a", Version: 1})
	conflict("Expect on an aggregate not in the batch", err, "a", 1, 2)
	err = st.Append(ctx, []store.Record{other}, store.Expect{AggregateID: "fresh", Version: 2})
	conflict("Expect on an unknown aggregate", err, "fresh", 2, 0)
	mustAppend(t, st, []store.Record{other}, store.Expect{AggregateID: "a", Version: 2}, store.Expect{AggregateID: "fresh", Version: 0})

	// One failing expectation among several fails the batch.
	b := inAggregate("b", newRecords("b", 1))
	err = st.Append(ctx, []store.Record{a[2], b[0]}, store.Expect{AggregateID: "a", Version: 2}, store.Expect{AggregateID: "b", Version: 1})
	conflict("second expectation fails", err, "b", 1, 0)
	for _, id := range []string{"a-2", "b-0"} {
		if _, err := st.Load(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("record %s of a batch that failed its Expect: Load = %v, want ErrNotFound", id, err)
		}
	}
	batch := []store.Record{a[2], b[0], a[3]}
	mustAppend(t, st, batch, store.Expect{AggregateID: "a", Version: 2}, store.Expect{AggregateID: "b", Version: 0})
	if batch[0].Version != 3 || batch[1].Version != 1 || batch[2].Version != 4 {
		t.Fatalf("versions a-2=%d b-0=%d a-3=%d; want 3, 1, 4", batch[0].Version, batch[1].Version, batch[2].Version)
	}
	got := readAll(t, st, store.Query{})
	checkIDs(t, "log after expectations", got, []string{"a-0", "a-1", "other", "a-2", "b-0", "a-3"})
}

// testExpectRace has many goroutines append with the same expectation at
// once: exactly one wins each round.
func (s suite) testExpectRace(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	const rounds, racers = 6, 8
	for round := range int64(rounds) {
		start := make(chan struct{})
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				recs := inAggregate("hot", newRecords(fmt.Sprintf("r%d-%d", round, i), 1))
				<-start
				errs[i] = st.Append(t.Context(), recs, store.Expect{AggregateID: "hot", Version: round})
			})
		}
		close(start)
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
				continue
			}
			var vc *store.VersionConflictError
			if !errors.Is(err, store.ErrVersionConflict) || !errors.As(err, &vc) {
				t.Fatalf("round %d: losing append failed with %v, want a *store.VersionConflictError", round, err)
			}
			if vc.Expected != round || vc.Actual != round+1 || vc.AggregateID != "hot" {
				t.Fatalf("round %d: conflict %+v, want aggregate hot expected %d actual %d", round, *vc, round, round+1)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d appends with Expect hot@%d succeeded, want exactly 1", round, wins, round)
		}
	}
	got, err := st.LoadAggregate(t.Context(), "hot", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != rounds {
		t.Fatalf("aggregate has %d records after %d rounds, want %d", len(got), rounds, rounds)
	}
}

// testFailuresAreIsolated runs failing and succeeding appends at the same
// time: a store that shares one transaction between concurrent callers must
// still fail only the batch at fault, and store nothing of it.
func (s suite) testFailuresAreIsolated(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	mustAppend(t, st, []store.Record{newRecord("taken")})
	const rounds, callers = 5, 12
	for round := range rounds {
		start := make(chan struct{})
		var wg sync.WaitGroup
		batches := make([][]store.Record, callers)
		errs := make([]error, callers)
		for i := range callers {
			prefix := fmt.Sprintf("r%d-c%d", round, i)
			batch := inAggregate(prefix, newRecords(prefix, 2))
			var expect []store.Expect
			switch i % 3 {
			case 0: // wrong expectation
				expect = []store.Expect{{AggregateID: prefix, Version: 5}}
			case 1: // an ID already stored with other content, after a good record
				dup := newRecord("taken")
				dup.Payload = []byte(`{"other":true}`)
				batch = append(batch, dup)
			case 2: // fine
				expect = []store.Expect{{AggregateID: prefix, Version: 0}}
			}
			batches[i] = batch
			wg.Go(func() {
				<-start
				errs[i] = st.Append(ctx, batch, expect...)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			what := fmt.Sprintf("round %d caller %d", round, i)
			switch i % 3 {
			case 0:
				checkErr(t, what+" (wrong Expect)", err, store.ErrVersionConflict)
			case 1:
				checkErr(t, what+" (duplicate ID)", err, store.ErrDuplicateID)
			case 2:
				if err != nil {
					t.Fatalf("%s: a valid append failed because of another caller's batch: %v", what, err)
				}
			}
			for _, r := range batches[i][:2] {
				_, err := st.Load(ctx, r.ID)
				if i%3 == 2 && err != nil {
					t.Fatalf("%s: Load(%s) = %v after a successful append", what, r.ID, err)
				}
				if i%3 != 2 && !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("%s: record %s of a failed batch: Load = %v, want ErrNotFound", what, r.ID, err)
				}
			}
			if i%3 == 2 && (batches[i][0].Version != 1 || batches[i][1].Version != 2) {
				t.Fatalf("%s: versions %d, %d; want 1, 2", what, batches[i][0].Version, batches[i][1].Version)
			}
		}
	}
	got := readAll(t, st, store.Query{})
	if want := 1 + rounds*(callers/3)*2; len(got) != want {
		t.Fatalf("log holds %d records, want %d", len(got), want)
	}
	checkOrdered(t, "log", got)
	taken, err := st.Load(ctx, "taken")
	if err != nil {
		t.Fatal(err)
	}
	checkRecord(t, "record whose ID others tried to reuse", taken, func() store.Record {
		r := newRecord("taken")
		r.Position = taken.Position
		return r
	}())
}

func (s suite) testIdempotent(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	first := inAggregate("x", newRecords("x", 3))
	first[0].Metadata = map[string]string{"k": "v"}
	mustAppend(t, st, first[:1])
	pos, ver := first[0].Position, first[0].Version

	// The same record again, as a retry would send it.
	again := slices.Clone(first[:1])
	again[0].Position, again[0].Version = 0, 0
	again[0].Metadata = map[string]string{"k": "v"}
	again[0].Time = again[0].Time.In(time.FixedZone("elsewhere", -7*3600)) // same instant
	if err := st.Append(ctx, again); err != nil {
		t.Fatalf("appending a stored record again: %v, want no error", err)
	}
	if again[0].Position != pos || again[0].Version != ver {
		t.Fatalf("repeated append wrote back position %d version %d, want the stored %d, %d", again[0].Position, again[0].Version, pos, ver)
	}

	// A batch mixing the stored record and a new one stores the new one.
	mixed := []store.Record{first[0], first[1]}
	mixed[0].Position, mixed[0].Version = 0, 0
	mustAppend(t, st, mixed)
	if mixed[0].Position != pos || mixed[0].Version != ver {
		t.Fatalf("stored record in a mixed batch: position %d version %d, want %d, %d", mixed[0].Position, mixed[0].Version, pos, ver)
	}
	if mixed[1].Version != 2 || mixed[1].Position <= pos {
		t.Fatalf("new record in a mixed batch: version %d position %d; want version 2 after position %d", mixed[1].Version, mixed[1].Position, pos)
	}
	got := readAll(t, st, store.Query{})
	checkIDs(t, "log after repeated appends", got, []string{"x-0", "x-1"})

	// The same ID with different content is refused, and its batch is not stored.
	changes := map[string]func(r *store.Record){
		"payload":      func(r *store.Record) { r.Payload = []byte(`{"changed":1}`) },
		"topic":        func(r *store.Record) { r.Topic = "other.topic" },
		"kind":         func(r *store.Record) { r.Kind = store.KindSystem },
		"aggregate":    func(r *store.Record) { r.AggregateID = "y" },
		"time":         func(r *store.Record) { r.Time = r.Time.Add(time.Second) },
		"metadata":     func(r *store.Record) { r.Metadata = map[string]string{"k": "w"} },
		"payload type": func(r *store.Record) { r.PayloadType = "other.Type" },
		"content type": func(r *store.Record) { r.ContentType = "text/plain" },
	}
	for what, change := range changes {
		r := first[0]
		r.Position, r.Version = 0, 0
		change(&r)
		batch := []store.Record{first[2], r}
		err := st.Append(ctx, batch)
		checkErr(t, "same ID, different "+what, err, store.ErrDuplicateID)
	}
	got = readAll(t, st, store.Query{})
	checkIDs(t, "log after refused duplicates", got, []string{"x-0", "x-1"})
	stored, err := st.Load(ctx, "x-0")
	if err != nil {
		t.Fatal(err)
	}
	want := first[0]
	want.Position, want.Version = pos, ver
	checkRecord(t, "stored record after refused duplicates", stored, want)
}

// testIdempotentRetryWithExpect replays a whole batch that was stored, with
// its expectation, as a client does when it lost the first reply: the
// replay succeeds and reports the stored positions, although the
// expectation no longer holds.
func (s suite) testIdempotentRetryWithExpect(t *testing.T) {
	t.Parallel()
	st := s.open(t)
	ctx := t.Context()
	batch := inAggregate("y", newRecords("y", 2))
	mustAppend(t, st, batch, store.Expect{AggregateID: "y", Version: 0})
	retry := inAggregate("y", newRecords("y", 2))
	if err := st.Append(ctx, retry, store.Expect{AggregateID: "y", Version: 0}); err != nil {
		t.Fatalf("replaying a stored batch with its Expect: %v, want no error", err)
	}
	for i := range retry {
		if retry[i].Position != batch[i].Position || retry[i].Version != batch[i].Version {
			t.Fatalf("replay wrote back position %d version %d for %s, want %d, %d",
				retry[i].Position, retry[i].Version, retry[i].ID, batch[i].Position, batch[i].Version)
		}
	}
	// A batch with a new record is not a replay: its expectation counts.
	more := inAggregate("y", newRecords("y", 3))
	err := st.Append(ctx, more, store.Expect{AggregateID: "y", Version: 0})
	checkErr(t, "partly new batch with a stale Expect", err, store.ErrVersionConflict)
	got := readAll(t, st, store.Query{})
	checkIDs(t, "log", got, []string{"y-0", "y-1"})
}
