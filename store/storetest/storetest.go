// Package storetest is the conformance suite for implementations of
// [store.Store]: every driver in this module runs it, and a third-party
// driver can run it too.
//
// A driver's test calls [Run] with a [Harness] that opens fresh, empty
// stores:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{
//			Open: func(tb testing.TB, maxPayload int) store.Store {
//				s, err := mystore.Open(tb.Context(), filepath.Join(tb.TempDir(), "events.db"), mystore.WithMaxPayloadSize(maxPayload))
//				if err != nil {
//					tb.Fatal(err)
//				}
//				tb.Cleanup(func() { s.Close() })
//				return s
//			},
//		})
//	}
//
// The suite checks the contract written on [store.Store]: the round trip of
// every field, dense per-aggregate versions under concurrency, optimistic
// concurrency, idempotent appends, filtered and paged reads (including
// sparse matches in a log larger than one read looks at), cursors,
// retention, checkpoints, dead letters and their lookup (when the store
// implements [store.DeadLetterStore]), append signals (when it implements
// [store.Notifier]), consumer groups (when it implements [store.Grouper]:
// exclusive leases, takeover on expiry, fenced checkpoints, fair shares
// that differ by at most one, partition reads that return exactly a
// partition's records in order), rejection of bad input (invalid records
// and dead letters as [store.ValidateRecords] and
// [store.ValidateDeadLetter] define them, and names that
// [store.ValidateName] refuses) with nothing written, contexts and
// closing.
// With [Harness.Begin] it also checks appends inside the caller's
// transaction (the transactional outbox) and that a reader paging by cursor
// never skips or repeats an event when transactions commit out of order.
//
// The randomized ordering test runs a few rounds; set the environment
// variable STORETEST_STRESS to a number of rounds to run it longer.
//
// The suite uses only the standard library's testing package.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

// Harness tells the suite how to make the store under test.
type Harness struct {
	// Open returns a new, empty store whose payload limit is maxPayload
	// bytes (0 = the driver default, store.DefaultMaxPayloadSize). It
	// registers its own cleanup with tb.Cleanup; that cleanup must tolerate
	// a store the suite has already closed. The suite calls Close on the
	// store if it implements io.Closer, to check closed-store behaviour.
	// Open is called from parallel subtests.
	Open func(tb testing.TB, maxPayload int) store.Store

	// Begin starts a transaction of the store's own database, for the
	// outbox and commit-order tests; events appended through the Tx commit
	// or roll back with it. Begin registers a cleanup with tb that rolls the
	// transaction back if it is still open, so a failing test does not leave
	// the database locked. The suite calls Begin from several goroutines at
	// once. Nil skips those tests.
	Begin func(ctx context.Context, tb testing.TB, s store.Store) Tx
}

// Tx is a caller-owned database transaction that events can be appended in
// (the transactional outbox). It is used from one goroutine at a time.
type Tx interface {
	// Append appends recs inside the transaction, with the semantics of
	// [store.Store.Append]; Position and Version are written back.
	Append(ctx context.Context, recs []store.Record, expect ...store.Expect) error
	// Commit commits the transaction.
	Commit(ctx context.Context) error
	// Rollback rolls the transaction back.
	Rollback(ctx context.Context) error
}

// Run runs the whole suite as subtests of t. Subtests that do not depend on
// timing run in parallel, each on its own store.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("storetest: Harness.Open is nil")
	}
	s := suite{h: h}
	tests := []struct {
		name string
		f    func(*testing.T)
	}{
		{"RoundTrip", s.testRoundTrip},
		{"LoadAggregate", s.testLoadAggregate},
		{"NotFound", s.testNotFound},
		{"ConcurrentVersions", s.testConcurrentVersions},
		{"Expect", s.testExpect},
		{"ExpectRace", s.testExpectRace},
		{"FailuresAreIsolated", s.testFailuresAreIsolated},
		{"Idempotent", s.testIdempotent},
		{"IdempotentRetryWithExpect", s.testIdempotentRetryWithExpect},
		{"ReadFilters", s.testReadFilters},
		{"ReadLimits", s.testReadLimits},
		{"ReadPaging", s.testReadPaging},
		{"ReadRecordCursor", s.testReadRecordCursor},
		{"ReadAtEnd", s.testReadAtEnd},
		{"ReadSparse", s.testReadSparse},
		{"InvalidCursor", s.testInvalidCursor},
		{"Checkpoint", s.testCheckpoint},
		{"DeadLetters", s.testDeadLetters},
		{"DeadLetterValidation", s.testDeadLetterValidation},
		{"InvalidNames", s.testInvalidNames},
		{"Notify", s.testNotify},
		{"Retention", s.testRetention},
		{"RetentionKeepsNumbering", s.testRetentionKeepsNumbering},
		{"RetentionManyRecords", s.testRetentionManyRecords},
		{"RetentionOutOfTimeOrder", s.testRetentionOutOfTimeOrder},
		{"BadInput", s.testBadInput},
		{"PayloadLimit", s.testPayloadLimit},
		{"TimeRange", s.testTimeRange},
		{"CancelledContext", s.testCancelledContext},
		{"Closed", s.testClosed},
		{"Outbox", s.testOutbox},
		{"GapFree", s.testGapFree},
		{"GapFreeRandom", s.testGapFreeRandom},
		{"GroupClaim", s.testGroupClaim},
		{"GroupFairShares", s.testGroupFairShares},
		{"GroupConcurrentClaims", s.testGroupConcurrentClaims},
		{"GroupReleaseAndFence", s.testGroupReleaseAndFence},
		{"GroupExpiry", s.testGroupExpiry},
		{"GroupRenewExpired", s.testGroupRenewExpired},
		{"GroupStartsAtCheckpoint", s.testGroupStartsAtCheckpoint},
		{"GroupLag", s.testGroupLag},
		{"GroupBadInput", s.testGroupBadInput},
		{"ReadPartitions", s.testReadPartitions},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.f)
	}
}

type suite struct{ h Harness }

// open returns a fresh store with the default payload limit.
func (s suite) open(t *testing.T) store.Store {
	t.Helper()
	st := s.h.Open(t, 0)
	if st == nil {
		t.Fatal("storetest: Harness.Open returned nil")
	}
	return st
}

// openAs opens a store, as s.open does, and returns it also as the
// optional interface I, skipping t when the store does not implement it.
func openAs[I any](s suite, t *testing.T) (store.Store, I) {
	t.Helper()
	st := s.open(t)
	i, ok := st.(I)
	if !ok {
		t.Skipf("store does not implement %v", reflect.TypeFor[I]())
	}
	return st, i
}

func (s suite) needBegin(t *testing.T) {
	t.Helper()
	if s.h.Begin == nil {
		t.Skip("storetest: Harness.Begin is nil; skipping transaction tests")
	}
}

// base is the time of the fixtures' first event.
var base = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// newRecord returns a valid record with the given ID and fixed content.
func newRecord(id string) store.Record {
	return store.Record{
		ID:          id,
		Topic:       "storetest.created",
		Kind:        store.KindDomain,
		Time:        base,
		ContentType: "application/json",
		PayloadType: "storetest.Payload",
		Payload:     []byte(`{"id":"` + id + `"}`),
	}
}

// newRecords returns n records with IDs prefix-0, prefix-1 … whose times grow
// by a millisecond each.
func newRecords(prefix string, n int) []store.Record {
	recs := make([]store.Record, n)
	for i := range recs {
		recs[i] = newRecord(fmt.Sprintf("%s-%d", prefix, i))
		recs[i].Time = base.Add(time.Duration(i) * time.Millisecond)
	}
	return recs
}

func inAggregate(agg string, recs []store.Record) []store.Record {
	for i := range recs {
		recs[i].AggregateID = agg
	}
	return recs
}

// mustAppend appends recs and fails the test on error.
func mustAppend(tb testing.TB, st store.Store, recs []store.Record, expect ...store.Expect) {
	tb.Helper()
	if err := st.Append(tb.Context(), recs, expect...); err != nil {
		tb.Fatalf("Append(%s): %v", idList(recs), err)
	}
}

// readAll returns every record matching q from q.After on, paging with
// store.All.
func readAll(tb testing.TB, st store.Store, q store.Query) []store.Record {
	tb.Helper()
	var out []store.Record
	for r, err := range store.All(tb.Context(), st, q) {
		if err != nil {
			tb.Fatalf("Read(%+v): %v", q, err)
		}
		out = append(out, r)
	}
	return out
}

func ids(recs []store.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

func idList(recs []store.Record) string {
	const max = 8
	s := ids(recs)
	if len(s) > max {
		return strings.Join(s[:max], ",") + fmt.Sprintf(",… (%d records)", len(s))
	}
	return strings.Join(s, ",")
}

// checkIDs fails unless got holds exactly the IDs want, in order.
func checkIDs(tb testing.TB, what string, got []store.Record, want []string) {
	tb.Helper()
	if g := ids(got); !slices.Equal(g, want) {
		tb.Fatalf("%s: got IDs\n  %v\nwant\n  %v", what, g, want)
	}
}

// checkOrdered fails unless recs are in strictly increasing Position.
func checkOrdered(tb testing.TB, what string, recs []store.Record) {
	tb.Helper()
	for i := 1; i < len(recs); i++ {
		if recs[i].Position <= recs[i-1].Position {
			tb.Fatalf("%s: record %s at position %d follows %s at position %d: not in global order",
				what, recs[i].ID, recs[i].Position, recs[i-1].ID, recs[i-1].Position)
		}
	}
}

// diffRecord describes how got differs from want, or returns "". Time is
// compared as an instant and must be in UTC; nil and empty metadata are
// alike; a nil payload must come back nil and an empty one empty.
func diffRecord(got, want store.Record) string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %#v, want %#v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Topic != want.Topic {
		add("Topic", got.Topic, want.Topic)
	}
	if got.Kind != want.Kind {
		add("Kind", got.Kind, want.Kind)
	}
	if got.AggregateID != want.AggregateID {
		add("AggregateID", got.AggregateID, want.AggregateID)
	}
	if got.Version != want.Version {
		add("Version", got.Version, want.Version)
	}
	if got.Position != want.Position {
		add("Position", got.Position, want.Position)
	}
	if !got.Time.Equal(want.Time) {
		add("Time", got.Time.Format(time.RFC3339Nano), want.Time.Format(time.RFC3339Nano))
	} else if got.Time.Location() != time.UTC {
		add("Time.Location()", got.Time.Location().String(), "UTC")
	}
	if len(got.Metadata) != 0 || len(want.Metadata) != 0 {
		if !maps.Equal(got.Metadata, want.Metadata) {
			add("Metadata", got.Metadata, want.Metadata)
		}
	}
	if got.PayloadType != want.PayloadType {
		add("PayloadType", got.PayloadType, want.PayloadType)
	}
	if got.ContentType != want.ContentType {
		add("ContentType", got.ContentType, want.ContentType)
	}
	if !bytes.Equal(got.Payload, want.Payload) || (got.Payload == nil) != (want.Payload == nil) {
		add("Payload", got.Payload, want.Payload)
	}
	return strings.Join(d, "; ")
}

// checkRecord fails if got differs from want in a stored field.
func checkRecord(tb testing.TB, what string, got, want store.Record) {
	tb.Helper()
	if d := diffRecord(got, want); d != "" {
		tb.Errorf("%s: record %s: %s", what, want.ID, d)
	}
}

// closeStore closes st if it is an io.Closer and reports whether it was.
func closeStore(tb testing.TB, st store.Store) bool {
	tb.Helper()
	c, ok := st.(io.Closer)
	if !ok {
		return false
	}
	if err := c.Close(); err != nil {
		tb.Fatalf("Close: %v", err)
	}
	return true
}

// checkErr fails unless err matches target.
func checkErr(tb testing.TB, what string, err, target error) {
	tb.Helper()
	if err == nil {
		tb.Errorf("%s: got no error, want one matching %v", what, target)
		return
	}
	if !errors.Is(err, target) {
		tb.Errorf("%s: got error %q, want one matching %q", what, err, target)
	}
}

// begin starts a transaction through the harness.
func (s suite) begin(t *testing.T, st store.Store) Tx {
	t.Helper()
	tx := s.h.Begin(t.Context(), t, st)
	if tx == nil {
		t.Fatal("storetest: Harness.Begin returned nil")
	}
	return tx
}

// waitFor waits for ch up to d, failing the test if it does not arrive.
func waitFor[T any](tb testing.TB, what string, ch <-chan T, d time.Duration) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		tb.Fatalf("%s did not happen within %v", what, d)
		panic("unreachable")
	}
}
