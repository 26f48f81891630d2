package decode

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// FuzzMetadata checks that Metadata, which reads the common
// shape of metadata without encoding/json, agrees with encoding/json on
// every input: the same map, or an error for both. The seeds run as a
// test.
func FuzzMetadata(f *testing.F) {
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
		var n Names
		got, err := Metadata(b, &n)
		var want map[string]string
		wantErr := json.Unmarshal(b, &want)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("Metadata(%q) error %v, encoding/json's %v", b, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("Metadata(%q) = %#v, encoding/json %#v", b, got, want)
		}
	})
}

// TestNamesBounded checks that Names keeps one copy of what recurs and
// stops keeping once full, still returning every string right.
func TestNamesBounded(t *testing.T) {
	var n Names
	a := n.Get([]byte("order.placed"))
	if b := n.Get([]byte("order.placed")); a != b {
		t.Fatalf("get = %q then %q", a, b)
	}
	if allocs := testing.AllocsPerRun(100, func() { n.Get([]byte("order.placed")) }); allocs != 0 {
		t.Errorf("get of a kept name allocates %v times", allocs)
	}
	for i := range 2 * MaxNames {
		b := []byte{'n', byte(i), byte(i >> 8)}
		if got := n.Get(b); got != string(b) {
			t.Fatalf("get(%q) = %q", b, got)
		}
	}
	if len(n.m) != MaxNames {
		t.Errorf("Names keeps %d, want at most %d", len(n.m), MaxNames)
	}
	long := make([]byte, MaxNameLen+1)
	if got := n.Get(long); got != string(long) {
		t.Error("get of a long name is wrong")
	}
	if _, kept := n.m[string(long)]; kept {
		t.Error("Names keeps a name longer than MaxNameLen")
	}
}

// TestPageExact checks that a Page hands out its records in a slice of
// their number, not the capacity it grew to, and keeps none of them once
// ended.
func TestPageExact(t *testing.T) {
	for _, n := range []int{0, 1, 3, 100} {
		p := GetPage()
		for i := range n {
			p.Add().ID = fmt.Sprint(i)
		}
		if p.Len() != n {
			t.Fatalf("Len = %d after %d Adds", p.Len(), n)
		}
		recs := p.Records()
		if len(recs) != n || cap(recs) > n+(n+7)/8 {
			t.Errorf("%d records handed out as len %d, cap %d", n, len(recs), cap(recs))
		}
		if n == 0 && recs != nil {
			t.Error("no records handed out as a non-nil slice")
		}
		for i, r := range recs {
			if r.ID != fmt.Sprint(i) {
				t.Fatalf("record %d has ID %q", i, r.ID)
			}
		}
		// Its buffer, taken again, holds nothing of the last read.
		q := GetPage()
		if q.Len() != 0 || (cap(q.buf) > 0 && q.buf[:1][0].ID != "") {
			t.Errorf("a page taken again holds %d records, or the last read's", q.Len())
		}
		q.Discard()
	}
}
