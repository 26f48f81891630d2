// Package benchmarks compares github.com/ncore-io/event with peers doing
// the same work in the same `go test -bench` invocation: a raw channel and
// worker pool (the floor), Watermill's gochannel Pub/Sub, asaskevich's
// EventBus, Watermill's SQL Pub/Sub on PostgreSQL, and raw driver loops.
//
// It is a module of its own so that the peers never enter the library's
// go.mod. The package has only benchmarks; run.sh runs them in rounds and
// cmd/benchtab turns the output into the table of BENCHMARKS.md at the
// repository root.
//
// Environment:
//
//	EVENT_BENCH_PG_DSN   a PostgreSQL server to use (the role needs CREATEDB);
//	                     without it the benchmarks start a throwaway server
//	                     when initdb is installed, and skip the PostgreSQL
//	                     benchmarks otherwise (fail when CI=true)
//	EVENT_BENCH_BACKLOG  events in the durable backlog benchmark (100000)
//	EVENT_BENCH_REPLAY   events in the replay benchmark (100000)
package benchmarks
