package pgstore

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ncore-io/event/store"
)

// FuzzDecodeMetadata checks that decodeMetadata, which reads the common
// shape of metadata without encoding/json, agrees with encoding/json on
// every input: the same map, or an error for both. The seeds run as a
// test.
func FuzzDecodeMetadata(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { } `, `{"a":"b"}`, `{"a": "b", "c": "d"}`, "{\n\t\"a\" : \"b\"\r\n}",
		`{"event.correlation_id": "01930000-0000-7000-8000-000000000000"}`,
		`{"a":"say \"hi\""}`, `{"a":"\u00e9"}`, `{"é€😀":"ü"}`, `{"a":"b\\c"}`, "{\"a\":\"\x01\"}",
		`{"1":"1","2":"2","3":"3","4":"4","5":"5","6":"6","7":"7","8":"8"}`,
		`{"1":"1","2":"2","3":"3","4":"4","5":"5","6":"6","7":"7","8":"8","9":"9"}`,
		`{"a":"b","a":"c"}`, `{"a":1}`, `{"a":null}`, `{"a":["b"]}`, `null`, `[]`, `"a"`, ``, ` `,
		`{`, `{"a"`, `{"a":`, `{"a":"b"`, `{"a":"b",}`, `{"a":"b"}x`, `{"a":"b"} `, `{,}`, `{"a" "b"}`,
		"{\"a\":\"\xff\"}", "{\"\xc3\":\"b\"}", `{"":""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var n names
		got, err := decodeMetadata(b, &n)
		var want map[string]string
		wantErr := json.Unmarshal(b, &want)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("decodeMetadata(%q) error %v, encoding/json's %v", b, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeMetadata(%q) = %#v, encoding/json %#v", b, got, want)
		}
	})
}

// TestNamesBounded checks that names keeps one copy of what recurs and
// stops keeping once full, still returning every string right.
func TestNamesBounded(t *testing.T) {
	var n names
	a := n.get([]byte("order.placed"))
	if b := n.get([]byte("order.placed")); a != b {
		t.Fatalf("get = %q then %q", a, b)
	}
	if allocs := testing.AllocsPerRun(100, func() { n.get([]byte("order.placed")) }); allocs != 0 {
		t.Errorf("get of a kept name allocates %v times", allocs)
	}
	for i := range 2 * maxNames {
		b := []byte{'n', byte(i), byte(i >> 8)}
		if got := n.get(b); got != string(b) {
			t.Fatalf("get(%q) = %q", b, got)
		}
	}
	if len(n.m) != maxNames {
		t.Errorf("names keeps %d, want at most %d", len(n.m), maxNames)
	}
	long := make([]byte, maxNameLen+1)
	if got := n.get(long); got != string(long) {
		t.Error("get of a long name is wrong")
	}
	if _, kept := n.m[string(long)]; kept {
		t.Error("names keeps a name longer than maxNameLen")
	}
}

// TestAppendRecordCapacity checks that a page starts small and then takes
// its whole limit at once.
func TestAppendRecordCapacity(t *testing.T) {
	var page []store.Record
	var caps []int
	for range 40 {
		page = appendRecord(page, store.Record{}, 40)
		if len(caps) == 0 || caps[len(caps)-1] != cap(page) {
			caps = append(caps, cap(page))
		}
	}
	if len(caps) != 2 || caps[0] != smallPage || caps[1] < 40 || caps[1] > 48 {
		t.Errorf("page capacities %v, want %d then the limit, 40", caps, smallPage)
	}
	if page = appendRecord(nil, store.Record{}, 1); cap(page) != smallPage {
		t.Errorf("a page of limit 1 starts at capacity %d", cap(page))
	}
}

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
