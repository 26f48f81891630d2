#!/usr/bin/env bash
# run.sh runs the side-by-side benchmarks in rounds and writes a table of
# medians with min–max. It starts a throwaway PostgreSQL server (initdb in
# a temporary directory, 127.0.0.1 on a free port, fsync and
# synchronous_commit on) and stops it on exit.
#
#   ./run.sh                 5 rounds, 100,000-event backlog and replay
#   ./run.sh -quick          2 rounds, short benchtime, 5,000 events
#   ./run.sh -rounds 3 -bench 'Async|Sync'   (a regexp of top-level benchmarks)
#   ./run.sh -out DIR        where raw.txt, table.md and env.txt go (default results,
#                            or results/quick with -quick)
#
# Each round runs every top-level benchmark once (-count 1), and each of
# those runs its variants one after the other, so the variants of a
# workload alternate across rounds (A B A B …) rather than running all of
# A first, and a noisy minute of the machine spreads over all of them.
# Set EVENT_BENCH_PG_DSN to use a server of your own instead.
set -euo pipefail
cd "$(dirname "$0")"

rounds=5 quick=0 out= filter=.
while [ $# -gt 0 ]; do
	case $1 in
	-quick) quick=1 ;;
	-rounds) rounds=$2; shift ;;
	-out) out=$2; shift ;;
	-bench) filter=$2; shift ;;
	*) echo "usage: $0 [-quick] [-rounds N] [-bench REGEXP] [-out DIR]" >&2; exit 2 ;;
	esac
	shift
done
if [ "$quick" = 1 ]; then
	[ "$rounds" = 5 ] && rounds=2
	benchtime=200ms latency=200x
	out=${out:-results/quick}
	export EVENT_BENCH_BACKLOG=${EVENT_BENCH_BACKLOG:-5000} EVENT_BENCH_REPLAY=${EVENT_BENCH_REPLAY:-5000}
else
	benchtime=1s latency=2000x
	out=${out:-results}
fi

command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
tmp=$(mktemp -d)
pgdata=""
as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
	if [ -n "$pgdata" ]; then as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${EVENT_BENCH_PG_DSN:-}" ]; then
	if command -v initdb >/dev/null; then
		pgbin=$(dirname "$(readlink -f "$(command -v initdb)")")
	else
		pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	fi
	if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
		echo "run.sh: initdb not found; install PostgreSQL or set EVENT_BENCH_PG_DSN" >&2
		exit 1
	fi
	[ "$(id -u)" = 0 ] && chown postgres "$tmp"
	as_pg "$pgbin/initdb" -D "$tmp/pg" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$tmp/initdb.log" ||
		{ cat "$tmp/initdb.log" >&2; exit 1; }
	for try in 1 2 3; do # a random port may be taken: try another
		port=$((20000 + RANDOM % 40000))
		if as_pg "$pgbin/pg_ctl" -D "$tmp/pg" -l "$tmp/pg.log" -w -t 60 start -o \
			"-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$tmp -c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=128MB -c max_wal_size=1GB" >/dev/null; then
			pgdata=$tmp/pg
			break
		fi
	done
	if [ -z "$pgdata" ]; then cat "$tmp/pg.log" >&2; exit 1; fi
	export EVENT_BENCH_PG_DSN="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
fi

mkdir -p "$out"
{
	echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "cpus: $(nproc)"
	echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "kernel: $(uname -sr)"
	echo "go: $(go env GOVERSION)"
	echo "postgres: $(psql --version 2>/dev/null || "${pgbin:-/usr/bin}/postgres" --version)"
	go list -m github.com/ThreeDotsLabs/watermill github.com/ThreeDotsLabs/watermill-sql/v4 \
		github.com/asaskevich/EventBus github.com/jackc/pgx/v5 modernc.org/sqlite | sed 's/^/module: /'
	echo "rounds: $rounds, benchtime: $benchtime (latency $latency), backlog: ${EVENT_BENCH_BACKLOG:-100000}, replay: ${EVENT_BENCH_REPLAY:-100000}"
} >"$out/env.txt"
cat "$out/env.txt"

go test -c -o "$tmp/bench.test" .
benches=$("$tmp/bench.test" -test.list '^Benchmark' | grep -E -- "$filter" || true)
if [ -z "$benches" ]; then echo "run.sh: no benchmark matches $filter" >&2; exit 1; fi
: >"$out/raw.txt"
for round in $(seq "$rounds"); do
	echo "--- round $round of $rounds"
	for b in $benches; do
		bt=$benchtime
		[ "$b" = BenchmarkDurableLatency ] && bt=$latency
		"$tmp/bench.test" -test.run '^$' -test.bench "^$b\$" -test.benchmem -test.count 1 \
			-test.benchtime "$bt" -test.timeout 20m | tee -a "$out/raw.txt" | grep '^Benchmark' || {
			echo "run.sh: $b failed; its output is in $out/raw.txt" >&2
			exit 1
		}
	done
done
go run ./cmd/benchtab "$out/raw.txt" >"$out/table.md"
echo "--- $out/table.md"
cat "$out/table.md"
