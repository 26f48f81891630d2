// Command benchtab reads `go test -bench` output, from files or standard
// input, possibly several runs of each benchmark, and prints a markdown
// table: per benchmark the median and min–max of events/s and ns/op, the
// median allocs/op and B/op, other metrics (p50-µs, p99-µs), and the ratio
// of ours to each peer.
//
// A benchmark's name ends in its implementation ("ours" for this library);
// the elements before it name the workload. Within a workload each peer's
// ratio is ours' median events/s over the peer's: above 1 we are faster.
//
//	go run ./cmd/benchtab results/raw.txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	var runs []run
	if len(os.Args) == 1 {
		runs = parse(os.Stdin)
	}
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		runs = append(runs, parse(f)...)
		f.Close()
	}
	if len(runs) == 0 {
		fmt.Fprintln(os.Stderr, "benchtab: no benchmark results in the input")
		os.Exit(1)
	}
	fmt.Print(table(runs))
}

// run is one result line: a benchmark's name (without the -GOMAXPROCS
// suffix) and its metrics by unit.
type run struct {
	name    string
	metrics map[string]float64
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// parse reads the result lines of go test -bench output and ignores the
// rest.
func parse(r io.Reader) []run {
	var runs []run
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not a result line (a log line that names a benchmark)
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			m[f[i+1]] = v
		}
		runs = append(runs, run{name: procsSuffix.ReplaceAllString(f[0], ""), metrics: m})
	}
	return runs
}

// stat is what a benchmark's runs give for one unit.
type stat struct{ med, lo, hi float64 }

func summarize(vs []float64) stat {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return stat{med, s[0], s[n-1]}
}

type bench struct {
	workload, impl string
	n              int
	stats          map[string]stat
}

// group collects the runs by benchmark, in order of first appearance.
func group(runs []run) []*bench {
	var out []*bench
	byName := map[string]*bench{}
	values := map[string]map[string][]float64{}
	for _, r := range runs {
		b := byName[r.name]
		if b == nil {
			i := strings.LastIndexByte(r.name, '/')
			if i < 0 {
				b = &bench{workload: r.name}
			} else {
				b = &bench{workload: strings.TrimPrefix(r.name[:i], "Benchmark"), impl: r.name[i+1:]}
			}
			byName[r.name] = b
			values[r.name] = map[string][]float64{}
			out = append(out, b)
		}
		b.n++
		for unit, v := range r.metrics {
			values[r.name][unit] = append(values[r.name][unit], v)
		}
	}
	for name, b := range byName {
		b.stats = map[string]stat{}
		for unit, vs := range values[name] {
			b.stats[unit] = summarize(vs)
		}
	}
	return out
}

func table(runs []run) string {
	benches := group(runs)
	ours := map[string]*bench{}
	var extras []string
	for _, b := range benches {
		if b.impl == "ours" {
			ours[b.workload] = b
		}
		for unit := range b.stats {
			switch unit {
			case "ns/op", "events/s", "allocs/op", "B/op":
			default:
				if !slices.Contains(extras, unit) {
					extras = append(extras, unit)
				}
			}
		}
	}
	slices.Sort(extras)
	var sb strings.Builder
	sb.WriteString("| workload | implementation | runs | events/s, median (min–max) | ours/peer | ns/op, median (min–max) | allocs/op | B/op |")
	for _, e := range extras {
		sb.WriteString(" " + e + " |")
	}
	sb.WriteString("\n|---|---|--:|--:|--:|--:|--:|--:|")
	for range extras {
		sb.WriteString("--:|")
	}
	sb.WriteString("\n")
	for _, b := range benches {
		ratio := ""
		if o := ours[b.workload]; o != nil && o != b {
			if oe, ok := o.stats["events/s"]; ok {
				if pe, ok := b.stats["events/s"]; ok && pe.med > 0 {
					ratio = fmt.Sprintf("%.2f×", oe.med/pe.med)
				}
			}
		}
		impl := b.impl
		if impl == "ours" {
			impl = "**ours**"
		}
		fmt.Fprintf(&sb, "| %s | %s | %d | %s | %s | %s | %s | %s |", b.workload, impl, b.n,
			spread(b.stats, "events/s", si), ratio, spread(b.stats, "ns/op", duration),
			median(b.stats, "allocs/op", si), median(b.stats, "B/op", si))
		for _, e := range extras {
			sb.WriteString(" " + spread(b.stats, e, si) + " |")
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

func spread(stats map[string]stat, unit string, f func(float64) string) string {
	s, ok := stats[unit]
	if !ok {
		return ""
	}
	if s.lo == s.hi {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.med), f(s.lo), f(s.hi))
}

func median(stats map[string]stat, unit string, f func(float64) string) string {
	s, ok := stats[unit]
	if !ok {
		return ""
	}
	return f(s.med)
}

// si prints v with three significant digits and a k/M/G suffix.
func si(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e9:
		return sig(v/1e9) + "G"
	case a >= 1e6:
		return sig(v/1e6) + "M"
	case a >= 1e4:
		return sig(v/1e3) + "k"
	}
	return sig(v)
}

// duration prints nanoseconds as ns, µs, ms or s.
func duration(ns float64) string {
	switch {
	case ns >= 1e9:
		return sig(ns/1e9) + " s"
	case ns >= 1e6:
		return sig(ns/1e6) + " ms"
	case ns >= 1e3:
		return sig(ns/1e3) + " µs"
	}
	return sig(ns) + " ns"
}

func sig(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100 || v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
