package pgstore

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

// TestReadSQLKeptByShape checks that a Read statement made once for its
// shape comes back the same, with the same parameters, when kept.
func TestReadSQLKeptByShape(t *testing.T) {
	s := &Store{sql: buildQueries(`"event"`, "event", 64), minScan: defaultMinScan}
	since := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	queries := []store.Query{
		{}, {Topic: ">"}, {Topic: "user.created"}, {Topic: "user.*"}, {Topic: "*.created"},
		{AggregateID: "a1"}, {Topic: "user.>", Kind: "domain", Since: since}, {Kind: "domain", AggregateID: "a2"},
	}
	for _, after := range []key{{}, {txid: 7, pos: 9}} {
		for _, q := range queries {
			sql1, p1, f1, o1 := s.readSQL(q, after, 50)
			sql2, p2, f2, o2 := s.readSQL(q, after, 50)
			if sql1 != sql2 || !reflect.DeepEqual(p1, p2) || f1 != f2 || o1 != o2 {
				t.Errorf("%+v after %v: kept statement differs:\n%s %v\n%s %v", q, after, sql1, p1, sql2, p2)
			}
			if want := strings.Count(sql1, "$"+strconv.Itoa(len(p1))); want == 0 {
				t.Errorf("%+v: statement has no $%d for its last parameter:\n%s", q, len(p1), sql1)
			}
		}
	}
	if n := len(s.readSQLs); n != 2*len(queries)-2 {
		// {} and {Topic: ">"} share a shape, in both halves.
		t.Errorf("%d shapes kept, want %d", n, 2*len(queries)-2)
	}
}
