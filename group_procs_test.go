package event_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/pgstore"
	"github.com/ncore-io/event/store/sqlitestore"
)

// The group process test runs the members of one consumer group as child
// processes of the test binary, each re-executed with -test.run selecting
// TestGroupMemberProcess and the environment naming the store. While the
// parent publishes, one member is killed with SIGKILL and a new one
// joins.
//
// Every member logs to one file, which all of them and the parent open
// O_APPEND and write a line at a time with one write(2): the kernel keeps
// what was written across SIGKILL, and the order of the lines is the order
// of what they record, across processes. A member logs each event its
// handler saw, and a line before and after each checkpoint it saves (the
// cursors it saves cover every event it logged before); the parent logs
// the killed member's death once it has reaped it. From the log the test
// knows which events the killed member handled after its last checkpoint:
// those, and only those, may be handled again.
//
//	H child seq aggregate version payload id unixnano   an event handled
//	B child                                             a checkpoint begun
//	E child ok|failed micros                            ... its outcome, and how long it took
//	K child                                             the child is dead
const (
	groupChildEnv   = "EVENT_GROUP_CHILD"    // "sqlite:PATH" or "postgres:DSN"; its presence makes the child
	groupChildIDEnv = "EVENT_GROUP_CHILD_ID" // the child's number, for the log
	groupLeaseEnv   = "EVENT_GROUP_LEASE"    // the members' lease
	groupLogEnv     = "EVENT_GROUP_LOG"      // the log
	groupProcsName  = "procs"                // the group
	// groupProcsEvery is the members' checkpoint frequency, and so the most
	// events the killed member may leave to be handled again.
	groupProcsEvery = 50
	// Every groupProcsWorkEvery-th event takes a millisecond to handle:
	// without it, a member would spend its time saving checkpoints, and
	// would mostly be doing that when it is killed or when its lease is
	// renewed and it gives up partitions, rather than handling events not
	// saved yet, which the test wants those moments to find.
	groupProcsWorkEvery = 7
	// groupProcsTimeout bounds each wait of the test; it is reached only
	// when the group machinery is broken.
	groupProcsTimeout = 2 * time.Minute
)

// groupProcsSize returns how many events the test publishes, over how
// many aggregates: a tenth of the full size under -short, and a fifth
// under the race detector, which slows SQLite (compiled from C to Go, and
// so instrumented throughout) so much that the full size would take two
// minutes.
func groupProcsSize() (events, aggregates int) {
	switch {
	case testing.Short():
		return 5_000, 250
	case raceEnabled:
		return 10_000, 500
	}
	return 50_000, 500
}

// TestGroupMemberProcess is the child of TestGroupProcesses: a bus with one
// shared durable subscription that logs what it handles and checkpoints,
// until its standard input ends (the parent closes it, or dies).
func TestGroupMemberProcess(t *testing.T) {
	spec := os.Getenv(groupChildEnv)
	if spec == "" {
		t.Skip("runs only as a child process of TestGroupProcesses")
	}
	child := os.Getenv(groupChildIDEnv)
	lease, err := time.ParseDuration(os.Getenv(groupLeaseEnv))
	if err != nil {
		t.Fatalf("child %s: %s: %v", child, groupLeaseEnv, err)
	}
	logf, err := os.OpenFile(os.Getenv(groupLogEnv), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("child %s: open the log: %v", child, err)
	}
	defer logf.Close()
	logLine := func(line string) {
		if _, err := logf.WriteString(line); err != nil {
			// The parent would draw the wrong conclusions; say why.
			fmt.Fprintf(os.Stderr, "child %s: cannot log %q: %v\n", child, line, err)
			os.Exit(3)
		}
	}
	ctx := context.Background()
	s, err := openCrashStore(ctx, spec)
	if err != nil {
		t.Fatalf("child %s: open the store: %v", child, err)
	}
	defer s.(io.Closer).Close()
	cl := commitLog{child: child, log: logLine}
	switch st := s.(type) {
	case *sqlitestore.Store:
		s = sqliteCommitLog{st, cl}
	case *pgstore.Store:
		s = pgCommitLog{st, cl}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bus, err := event.New[int](event.WithStore(s), event.WithPollInterval(20*time.Millisecond), event.WithLogger(logger))
	if err != nil {
		t.Fatalf("child %s: %v", child, err)
	}
	var seq atomic.Int64
	sub, err := event.Subscribe(bus, "procs.>", func(_ context.Context, ev event.Event[int]) error {
		n := seq.Add(1)
		if n%groupProcsWorkEvery == 0 {
			time.Sleep(time.Millisecond) // work, now and then
		}
		logLine(fmt.Sprintf("H %s %d %s %d %d %s %d\n", child, n, ev.AggregateID, ev.Version, ev.Payload, ev.ID, time.Now().UnixNano()))
		return nil
	}, event.Durable(groupProcsName), event.Shared(), event.Lease(lease), event.Checkpoint(groupProcsEvery, 0))
	if err != nil {
		t.Fatalf("child %s: %v", child, err)
	}
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		t.Errorf("child %s: read stdin: %v", child, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bus.Close(cctx); err != nil {
		t.Errorf("child %s: Close: %v", child, err)
	}
	if err := sub.Err(); err != nil {
		t.Errorf("child %s: subscription: %v", child, err)
	}
}

// commitLog logs the checkpoints a member saves: B before, E after.
type commitLog struct {
	child string
	log   func(string)
}

// commit runs commit, a store's Commit, between a B line and an E line.
func (l commitLog) commit(ctx context.Context, group, member string, cps []store.Checkpoint, commit func(context.Context, string, string, ...store.Checkpoint) error) error {
	l.log("B " + l.child + "\n")
	start := time.Now()
	err := commit(ctx, group, member, cps...)
	took := strconv.FormatInt(time.Since(start).Microseconds(), 10)
	if err != nil {
		l.log("E " + l.child + " failed " + took + "\n")
		return err
	}
	l.log("E " + l.child + " ok " + took + "\n")
	return nil
}

// sqliteCommitLog is a SQLite store whose Commit is logged.
type sqliteCommitLog struct {
	*sqlitestore.Store
	log commitLog
}

// Commit implements [store.Grouper], logged.
func (s sqliteCommitLog) Commit(ctx context.Context, group, member string, cps ...store.Checkpoint) error {
	return s.log.commit(ctx, group, member, cps, s.Store.Commit)
}

// pgCommitLog is a PostgreSQL store whose Commit is logged.
type pgCommitLog struct {
	*pgstore.Store
	log commitLog
}

// Commit implements [store.Grouper], logged.
func (s pgCommitLog) Commit(ctx context.Context, group, member string, cps ...store.Checkpoint) error {
	return s.log.commit(ctx, group, member, cps, s.Store.Commit)
}

// TestGroupProcesses proves the consumer group across processes: three
// member processes share the events of a publisher in this one; one of them
// is killed with SIGKILL midway and another started later. Every event is
// handled; each aggregate's events in order; an event is handled again only
// if the killed member handled it after its last checkpoint, by another
// member after the death, and then at most once, and at most as many as
// the checkpoint frequency; at the end the live members hold every
// partition, read to its end.
func TestGroupProcesses(t *testing.T) {
	events, aggs := groupProcsSize()
	for _, kind := range []string{"sqlite", "postgres"} {
		t.Run(kind, func(t *testing.T) { runGroupProcesses(t, kind, events, aggs) })
	}
}

// runGroupProcesses runs TestGroupProcesses on a store of kind, "sqlite"
// or "postgres".
func runGroupProcesses(t *testing.T, kind string, events, aggs int) {
	began := time.Now()
	dir := t.TempDir()
	// The lease must be long enough that live members renew in time: one
	// that loses its lease leaves its unsaved events to be handled again,
	// which this test counts as an error, as only the killed one may. On
	// SQLite, whose processes take turns to write, a renewal waits for the
	// publisher's appends (by up to a second on a loaded machine, as SQLite
	// polls for the lock; see publish), so the members keep the default lease:
	// that does not slow the test down, as SQLite takes over the
	// partitions of a member whose process exited at once. On PostgreSQL a
	// dead member's partitions wait for their lease to run out, so it is
	// shorter.
	spec, lease := "sqlite:"+filepath.Join(dir, "events.db"), event.DefaultLease
	if kind == "postgres" {
		spec, lease = "postgres:"+pgtest.DSN(t), 2*time.Second
	}
	ctx := t.Context()
	// The parent makes the store, so that the children do not race to.
	s, err := openCrashStore(ctx, spec)
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	t.Cleanup(func() { s.(io.Closer).Close() })
	n := s.(store.Grouper).Partitions()
	pub := newStoreBus[int](t, s)
	logPath := filepath.Join(dir, "group.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	const victim, joiner = 0, 3
	g := &groupProcs{
		t: t, pub: pub, dir: dir, spec: spec, lease: lease, logf: logf, n: n,
		children: map[int]*groupChild{},
		tail:     &logTail{path: logPath},
		check:    newGroupCheck(victim),
	}
	perAgg := events / aggs
	first := max(perAgg/10, 1) // a tenth of the versions
	aggName := func(a int) string { return fmt.Sprintf("agg-%03d", a) }
	// publish appends versions from+1..to of every aggregate in batches of
	// versions versions, each in aggregate order, so that each aggregate's
	// events are appended in order: an event's payload is its version less
	// one. Before each batch it waits for the members to have handled all
	// but a batch's worth of what was published. A publisher that
	// outpaced them would hold SQLite's write lock most of the time, which
	// the members' renewals and checkpoints wait for (SQLite keeps no queue
	// of the processes waiting for its lock: each polls, and a busy writer
	// keeps winning it), and the members would lose their leases.
	published := 0
	publish := func(from, to, versions int) {
		for v0 := from; v0 < to; v0 += versions {
			var msgs []event.Message[int]
			for v := v0; v < min(v0+versions, to); v++ {
				for a := range aggs {
					msgs = append(msgs, event.Message[int]{Topic: "procs.item", Payload: v, Options: []event.PublishOption{event.Aggregate(aggName(a))}})
				}
			}
			g.waitFor("the members to keep up with the publisher", logPoll, func() bool { return published-g.check.distinct <= len(msgs) })
			if err := pub.PublishBatch(ctx, msgs); err != nil {
				t.Fatalf("PublishBatch: %v", err)
			}
			published += len(msgs)
		}
	}
	// publishWhile publishes as publish does, from+1 on, until done holds
	// or up to to, and returns where it got to.
	publishWhile := func(from, to int, done func() bool) int {
		v := from
		for ; v < to && !done(); v = min(v+5, to) {
			publish(v, min(v+5, to), 5)
		}
		return v
	}

	// A tenth before the members start, in one batch, and more while they
	// join one after another and share the partitions, so that partitions
	// change hands with events handled since their last checkpoint, which
	// the member that gives one up must save first.
	publish(0, first, perAgg)
	for id := range 3 {
		g.start(id)
	}
	shared := func() bool {
		return g.ownedByLive(func(info store.GroupInfo) bool {
			for _, m := range info.Members {
				if m.Partitions > store.Share(n, 3) {
					return false
				}
			}
			return len(info.Members) == 3
		})
	}
	burst := perAgg/2 - first
	v := publishWhile(first, burst, shared)
	g.waitFor("three members to share every partition", groupPoll, shared)

	// Half the events, the last tenth of them in one batch, which the
	// members find all at once, so that the victim is at work on it for a
	// while: it is killed once it has handled nine tenths of a
	// checkpoint's worth since its last one (so that the kill finds it
	// with almost that many, or saving them, or just past), or else
	// (should it be too quick for this test to see) once it has handled
	// all of the batch that is its.
	victimParts := g.partitionsOf(g.children[victim].pid())
	publish(v, burst, 5)
	publish(burst, perAgg/2, perAgg)
	mine := 0
	for a := range aggs {
		if victimParts[store.Partition(aggName(a), "", n)] {
			mine += perAgg/2 - burst
		}
	}
	g.waitFor("the victim to be at work on the last batch", logPoll, func() bool {
		c := g.check
		return c.victimFrom(burst) >= mine || c.lastPayload[victim] >= burst && !c.inCommit && c.unsaved() >= groupProcsEvery*9/10
	})
	g.kill(victim)
	killedAt := time.Now()
	g.waitFor("the live members to take over the killed member's partitions", groupPoll, func() bool {
		return g.ownedByLive(func(info store.GroupInfo) bool { return len(info.Members) == 2 })
	})
	tookOver := time.Since(killedAt)

	// A new member joins while the others are at work on a quarter more,
	// in one batch, and more is published, so that they give it
	// partitions with events handled since their last checkpoint; the
	// last tenth is published once it holds partitions.
	publish(perAgg/2, perAgg*3/4, perAgg)
	g.start(joiner)
	joined := func() bool {
		return g.ownedByLive(func(info store.GroupInfo) bool {
			return len(info.Members) == 3 && len(g.partitionsOf(g.children[joiner].pid())) > 0
		})
	}
	v = publishWhile(perAgg*3/4, perAgg-first, joined)
	g.waitFor("the new member to get partitions", groupPoll, joined)
	publish(v, perAgg, 5)
	publishedIn := time.Since(began)

	g.waitFor("every event to be handled and checkpointed", groupPoll, func() bool {
		if g.check.distinct < events {
			return false
		}
		return g.ownedByLive(func(info store.GroupInfo) bool {
			for _, p := range info.Partitions {
				if p.Lag != 0 {
					return false
				}
			}
			return len(info.Members) == 3
		})
	})
	handled := time.Since(began)
	final := g.group()
	g.stopAll()
	g.feed()

	c := g.check
	c.finish()
	if len(c.errs) > 0 {
		t.Errorf("%d violations, the first:\n%s", len(c.errs), strings.Join(c.errs[:min(len(c.errs), 10)], "\n"))
	}
	if c.distinct != events {
		t.Errorf("%d distinct events handled, want %d", c.distinct, events)
	}
	for a := range aggs {
		if v := c.hi[aggName(a)]; v != int64(perAgg) {
			t.Errorf("%s: last version handled %d, want %d", aggName(a), v, perAgg)
		}
	}
	// Every event in the store was handled, under its own ID.
	var stored int
	for cur := store.Cursor(""); ; {
		recs, next, err := s.Read(ctx, store.Query{After: cur, Limit: store.MaxReadLimit})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			stored++
			if k := (aggVersion{r.AggregateID, r.Version}); c.ids[k] != r.ID {
				t.Errorf("stored event %s (%s version %d) handled as %q", r.ID, r.AggregateID, r.Version, c.ids[k])
			}
		}
		if len(recs) == 0 {
			break
		}
		cur = next
	}
	if stored != events {
		t.Errorf("%d events in the store, want %d", stored, events)
	}
	if len(c.repeated) > groupProcsEvery {
		t.Errorf("%d events handled again after the kill, more than the checkpoint frequency %d", len(c.repeated), groupProcsEvery)
	}
	for _, id := range []int{0, 1, 2, joiner} {
		if c.perChild[id] == 0 {
			t.Errorf("child %d handled nothing: %v", id, c.perChild)
		}
	}
	owners := map[string]int{}
	for _, p := range final.Partitions {
		owners[p.Owner]++
	}
	during := "handling events"
	if c.killedInCommit {
		during = "saving a checkpoint"
	}
	t.Logf("%s: %d events over %d aggregates and %d partitions; handled per child %v; "+
		"the victim, holding %d partitions, was killed while %s, with %d to %d events handled since its last checkpoint; "+
		"%d handled again; its partitions taken over in %v; final owners %v; the slowest checkpoint took %v; published in %v, all handled in %v, whole test %v",
		kind, events, aggs, n, c.perChild,
		len(victimParts), during, c.unsaved(), c.unsavedMost(),
		len(c.repeated), tookOver.Round(time.Millisecond), slices.Sorted(maps.Values(owners)), c.slowest.Round(time.Millisecond),
		publishedIn.Round(time.Millisecond), handled.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// groupProcs is the parent's side of the test.
type groupProcs struct {
	t        *testing.T
	pub      *event.Bus[int]
	dir      string
	spec     string
	lease    time.Duration
	logf     *os.File // the log, for the parent's lines
	n        int      // partitions
	children map[int]*groupChild
	tail     *logTail
	check    *groupCheck
}

// groupChild is one member process.
type groupChild struct {
	id     int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    string        // its stdout and stderr
	done   chan struct{} // closed once it has been waited for
	err    error         // of Wait
	killed bool          // by the test, on purpose
}

// pid returns the child's process ID.
func (c *groupChild) pid() int { return c.cmd.Process.Pid }

// exited reports whether the child has exited and been waited for.
func (c *groupChild) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// output returns the end of what the child printed.
func (c *groupChild) output() string {
	b, err := os.ReadFile(c.out)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4<<10 {
		b = b[len(b)-4<<10:]
	}
	return string(b)
}

// start starts child id. If it still runs when the test ends, it is
// killed then; if the test failed, what it printed is logged.
func (g *groupProcs) start(id int) {
	t := g.t
	t.Helper()
	out, err := os.Create(filepath.Join(g.dir, fmt.Sprintf("child-%d.out", id)))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGroupMemberProcess$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), groupChildEnv+"="+g.spec, groupChildIDEnv+"="+strconv.Itoa(id),
		groupLeaseEnv+"="+g.lease.String(), groupLogEnv+"="+g.logf.Name())
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child %d: %v", id, err)
	}
	c := &groupChild{id: id, cmd: cmd, stdin: stdin, out: out.Name(), done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		if !c.exited() {
			cmd.Process.Kill()
		}
		<-c.done
		stdin.Close()
		if t.Failed() {
			t.Logf("child %d (pid %d) printed:\n%s", id, c.pid(), c.output())
		}
	})
	g.children[id] = c
}

// kill kills child id with SIGKILL, reaps it, and logs its death.
func (g *groupProcs) kill(id int) {
	t := g.t
	t.Helper()
	c := g.children[id]
	c.killed = true
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill child %d: %v", id, err)
	}
	<-c.done
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child %d ended by itself before the kill (%v):\n%s", id, c.err, c.output())
	}
	if _, err := fmt.Fprintf(g.logf, "K %d\n", id); err != nil {
		t.Fatal(err)
	}
	g.feed()
}

// stopAll closes the live children's standard input and waits for them to
// close their buses and exit.
func (g *groupProcs) stopAll() {
	t := g.t
	t.Helper()
	for _, c := range g.children {
		if !c.killed {
			c.stdin.Close()
		}
	}
	deadline := time.After(groupProcsTimeout)
	for _, id := range slices.Sorted(maps.Keys(g.children)) {
		c := g.children[id]
		if c.killed {
			continue
		}
		select {
		case <-c.done:
		case <-deadline:
			t.Fatalf("child %d did not exit after its input closed:\n%s", id, c.output())
		}
		if c.err != nil {
			t.Errorf("child %d: %v:\n%s", id, c.err, c.output())
		}
	}
}

// live returns the pids of the children that run.
func (g *groupProcs) live() map[int]bool {
	pids := map[int]bool{}
	for _, c := range g.children {
		if !c.killed {
			pids[c.pid()] = true
		}
	}
	return pids
}

// feed reads the new lines of the log into the check.
func (g *groupProcs) feed() {
	lines, err := g.tail.next()
	if err != nil {
		g.t.Fatal(err)
	}
	for _, l := range lines {
		g.check.line(l)
	}
}

// Polling intervals: conditions on the log, which is cheap to read on, are
// polled often, to see the moment come; conditions that read the group's
// state from the store less often, so as not to load it.
const (
	logPoll   = time.Millisecond
	groupPoll = 20 * time.Millisecond
)

// waitFor polls cond every poll, with the log read up to date, until it
// holds; it fails the test if a child exits or groupProcsTimeout passes
// first.
func (g *groupProcs) waitFor(what string, poll time.Duration, cond func() bool) {
	t := g.t
	t.Helper()
	deadline := time.Now().Add(groupProcsTimeout)
	for {
		g.feed()
		for _, c := range g.children {
			if !c.killed && c.exited() {
				t.Fatalf("waiting for %s: child %d exited (%v):\n%s", what, c.id, c.err, c.output())
			}
		}
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %d distinct events handled, per child %v; group: %s",
				groupProcsTimeout, what, g.check.distinct, g.check.perChild, g.describe())
		}
		time.Sleep(poll)
	}
}

// group returns the group's state.
func (g *groupProcs) group() store.GroupInfo {
	info, err := g.pub.Group(g.t.Context(), groupProcsName)
	if err != nil {
		g.t.Fatal(err)
	}
	return info
}

// ownedByLive reports whether every partition has an owner, each a live
// child, as is every member, and more holds of the group.
func (g *groupProcs) ownedByLive(more func(store.GroupInfo) bool) bool {
	info := g.group()
	live := g.live()
	if len(info.Partitions) != g.n {
		return false
	}
	for _, p := range info.Partitions {
		if !live[memberPID(p.Owner)] {
			return false
		}
	}
	for _, m := range info.Members {
		if !live[memberPID(m.ID)] {
			return false
		}
	}
	return more(info)
}

// partitionsOf returns the partitions of the child with pid.
func (g *groupProcs) partitionsOf(pid int) map[int]bool {
	held := map[int]bool{}
	for _, p := range g.group().Partitions {
		if memberPID(p.Owner) == pid {
			held[p.Partition] = true
		}
	}
	return held
}

// describe summarises the group for a failure message.
func (g *groupProcs) describe() string {
	info, err := g.pub.Group(g.t.Context(), groupProcsName)
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, m := range info.Members {
		fmt.Fprintf(&b, "member %s holds %d; ", m.ID, m.Partitions)
	}
	for _, p := range info.Partitions {
		if p.Owner == "" || p.Lag != 0 {
			fmt.Fprintf(&b, "partition %d owner %q lag %d; ", p.Partition, p.Owner, p.Lag)
		}
	}
	fmt.Fprintf(&b, "live children %v", slices.Sorted(maps.Keys(g.live())))
	return b.String()
}

// memberPID returns the process ID in a member ID (host/pid/random), 0 if
// it has none.
func memberPID(member string) int {
	parts := strings.Split(member, "/")
	if len(parts) < 3 {
		return 0
	}
	pid, _ := strconv.Atoi(parts[len(parts)-2])
	return pid
}

// logTail reads a growing file a complete line at a time.
type logTail struct {
	path string
	off  int64
	rest []byte // a partial last line
}

// next returns the lines completed since the last call.
func (l *logTail) next() ([]string, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	l.off += int64(len(b))
	b = append(l.rest, b...)
	end := bytes.LastIndexByte(b, '\n') + 1
	l.rest = slices.Clone(b[end:])
	if end == 0 {
		return nil, nil
	}
	return strings.Split(string(b[:end-1]), "\n"), nil
}

// aggVersion names an event by its aggregate and version.
type aggVersion struct {
	agg string
	v   int64
}

// groupCheck checks the log line by line, in its order: the order in which
// the members handled events and saved checkpoints.
type groupCheck struct {
	victim      int
	killed      bool // the victim's death is in the log
	distinct    int
	perChild    map[int]int
	lastPayload map[int]int           // the payload of the child's last event
	ids         map[aggVersion]string // the event ID handled
	first       map[aggVersion]int    // who handled it first
	hi          map[string]int64      // the aggregate's highest version handled
	prev        map[string]aggHandled // the aggregate's last event handled
	mine        map[int]map[string]int64
	repeated    map[aggVersion]bool
	slowest     time.Duration // the longest a checkpoint took to save
	errs        []string

	// The victim's events in the order it handled them, and where each is
	// in that order; how many of them its last checkpoint begun covers,
	// and its last checkpoint saved; whether a checkpoint was under way,
	// and when it died.
	victimSeq      []aggVersion
	victimAt       map[aggVersion]int
	begun, saved   int
	inCommit       bool
	killedInCommit bool
}

// aggHandled is an event of an aggregate that a child handled.
type aggHandled struct {
	child int
	v     int64
}

// newGroupCheck returns a check of a log in which child victim is killed.
func newGroupCheck(victim int) *groupCheck {
	return &groupCheck{
		victim: victim, perChild: map[int]int{}, lastPayload: map[int]int{}, ids: map[aggVersion]string{}, first: map[aggVersion]int{},
		hi: map[string]int64{}, prev: map[string]aggHandled{}, mine: map[int]map[string]int64{}, repeated: map[aggVersion]bool{},
		victimAt: map[aggVersion]int{},
	}
}

// fail records a violation.
func (c *groupCheck) fail(format string, args ...any) {
	if len(c.errs) < 1000 {
		c.errs = append(c.errs, fmt.Sprintf(format, args...))
	}
}

// unsaved is how many events the victim handled since its last checkpoint
// began; unsavedMost, since the last one it saw saved. A kill in between
// leaves one or the other to be handled again.
func (c *groupCheck) unsaved() int     { return len(c.victimSeq) - c.begun }
func (c *groupCheck) unsavedMost() int { return len(c.victimSeq) - c.saved }

// victimFrom counts the events with a payload of at least from that the
// victim handled.
func (c *groupCheck) victimFrom(from int) int {
	n := 0
	for _, k := range c.victimSeq {
		if int(k.v-1) >= from {
			n++
		}
	}
	return n
}

// line takes one line of the log.
func (c *groupCheck) line(l string) {
	f := strings.Fields(l)
	switch {
	case len(f) == 2 && f[0] == "K":
		c.killed, c.killedInCommit = true, c.inCommit
		return
	case len(f) == 2 && f[0] == "B":
		if f[1] == strconv.Itoa(c.victim) {
			c.begun, c.inCommit = len(c.victimSeq), true
		}
		return
	case len(f) == 4 && f[0] == "E":
		if us, err := strconv.ParseInt(f[3], 10, 64); err == nil {
			c.slowest = max(c.slowest, time.Duration(us)*time.Microsecond)
		}
		if f[1] == strconv.Itoa(c.victim) {
			if f[2] == "ok" {
				c.saved = c.begun
			}
			c.inCommit = false
		}
		return
	case len(f) == 8 && f[0] == "H":
	default:
		c.fail("malformed log line %q", l)
		return
	}
	child, err1 := strconv.Atoi(f[1])
	agg, id := f[3], f[6]
	v, err2 := strconv.ParseInt(f[4], 10, 64)
	payload, err3 := strconv.ParseInt(f[5], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		c.fail("malformed log line %q", l)
		return
	}
	c.perChild[child]++
	c.lastPayload[child] = int(payload)
	k := aggVersion{agg, v}
	if payload != v-1 {
		c.fail("child %d: %s version %d carries payload %d: versions out of publish order", child, agg, v, payload)
	}
	if child == c.victim {
		if c.killed {
			c.fail("child %d handled %s version %d after it was killed", child, agg, v)
		}
		c.victimAt[k] = len(c.victimSeq)
		c.victimSeq = append(c.victimSeq, k)
	}
	// A child handles an aggregate's versions in increasing order, one
	// after the other while no other child handles the aggregate.
	if c.mine[child] == nil {
		c.mine[child] = map[string]int64{}
	}
	if last := c.mine[child][agg]; v <= last {
		c.fail("child %d handled %s version %d after version %d", child, agg, v, last)
	}
	c.mine[child][agg] = v
	prev := c.prev[agg]
	switch {
	case prev.child == child && prev.v != 0 && v != prev.v+1:
		c.fail("child %d handled %s version %d right after version %d", child, agg, v, prev.v)
	case v > c.hi[agg]+1:
		c.fail("child %d handled %s version %d before version %d was handled", child, agg, v, c.hi[agg]+1)
	}
	c.prev[agg] = aggHandled{child, v}
	c.hi[agg] = max(c.hi[agg], v)
	prevID, ok := c.ids[k]
	if !ok {
		c.ids[k], c.first[k] = id, child
		c.distinct++
		return
	}
	if prevID != id {
		c.fail("%s version %d handled as event %s and as %s", agg, v, prevID, id)
	}
	// A repeat: only of what the victim handled, after its last
	// checkpoint, by another child after the victim's death, and once.
	switch {
	case c.first[k] != c.victim:
		c.fail("child %d handled %s version %d again, first handled by live child %d", child, agg, v, c.first[k])
	case !c.killed:
		c.fail("child %d handled %s version %d again while child %d, who handled it, was alive", child, agg, v, c.victim)
	case c.victimAt[k] < c.saved:
		c.fail("child %d handled %s version %d again, which the killed child's checkpoint had saved", child, agg, v)
	case c.repeated[k]:
		c.fail("child %d handled %s version %d a third time", child, agg, v)
	}
	c.repeated[k] = true
}

// finish checks, once every event has been handled, that what the victim
// handled after its last checkpoint began was handled again: no
// checkpoint could have saved it.
func (c *groupCheck) finish() {
	for _, k := range c.victimSeq[c.begun:] {
		if !c.repeated[k] {
			c.fail("%s version %d, handled by the killed child after its last checkpoint began, was not handled again", k.agg, k.v)
		}
	}
}
