package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkAsync1Handler/ours-2    	 1153180	       300 ns/op	   3000000 events/s	     224 B/op	       1 allocs/op
BenchmarkAsync1Handler/chan-2    	 6441162	        50 ns/op	  20000000 events/s	       0 B/op	       0 allocs/op
BenchmarkAsync1Handler/ours-2    	 1153180	       200 ns/op	   5000000 events/s	     224 B/op	       1 allocs/op
BenchmarkAsync1Handler/chan-2    	 6441162	        50 ns/op	  20000000 events/s	       0 B/op	       0 allocs/op
BenchmarkAsync1Handler/ours-2    	 1153180	       250 ns/op	   4000000 events/s	     224 B/op	       1 allocs/op
BenchmarkDurableLatency/sqlite/ours-2  10  11209520 ns/op  89.21 events/s  2373 p50-µs  83133 p99-µs  15340 B/op  275 allocs/op
--- FAIL: BenchmarkX/ours
    main_test.go:1: BenchmarkX/ours handled 3 of 4
PASS
`

func TestParse(t *testing.T) {
	runs := parse(strings.NewReader(sample))
	if len(runs) != 6 {
		t.Fatalf("parsed %d runs, want 6: %+v", len(runs), runs)
	}
	if r := runs[5]; r.name != "BenchmarkDurableLatency/sqlite/ours" || r.metrics["p99-µs"] != 83133 || r.metrics["allocs/op"] != 275 {
		t.Fatalf("last run = %+v", r)
	}
}

func TestTable(t *testing.T) {
	out := table(parse(strings.NewReader(sample)))
	for _, want := range []string{
		// median of 3M, 5M, 4M is 4M, with its range; 4M/20M = 0.20.
		"| Async1Handler | **ours** | 3 | 4M (3M–5M) |  | 250 ns (200 ns–300 ns) | 1 | 224 |",
		"| Async1Handler | chan | 2 | 20M | 0.20× |",
		"| DurableLatency/sqlite | **ours** | 1 | 89.2 |",
		"| 2373 | 83.1k |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestSummarizeEven(t *testing.T) {
	if s := summarize([]float64{4, 1, 3, 2}); s != (stat{2.5, 1, 4}) {
		t.Fatalf("summarize = %+v", s)
	}
}
