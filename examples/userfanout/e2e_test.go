package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventhttp"
	"github.com/ncore-io/event/examples/userfanout/data"
	"github.com/ncore-io/event/examples/userfanout/service"
	"github.com/ncore-io/event/internal/pgtest"
	"github.com/ncore-io/event/store"
)

// The original design's example event, exactly as its curl call posts it.
const seedEvent = `{
    "type": "user.registered",
    "data": {
      "user_id": "123",
      "email": "user@example.com"
    }
  }`

// curlForm is the content type curl -d sends when no -H is given.
const curlForm = "application/x-www-form-urlencoded"

// The program, built once for the tests that run it.
var (
	buildDir  string
	buildOnce = sync.OnceValues(func() (string, error) {
		bin := filepath.Join(buildDir, "userfanout")
		args := []string{"build", "-o", bin}
		if raceEnabled {
			args = append(args, "-race") // reuses the race-built packages of this test
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		out, err := exec.Command(goTool, append(args, ".")...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go build: %v\n%s", err, out)
		}
		return bin, nil
	})
)

func build(t *testing.T) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// program is a running userfanout.
type program struct {
	cmd  *exec.Cmd
	url  string
	out  *syncBuffer // stdout and stderr
	done chan struct{}
}

var listening = regexp.MustCompile(`listening on (http://\S+),`)

// startProgram runs the program and waits until it listens.
func startProgram(t *testing.T, bin string, args ...string) *program {
	t.Helper()
	p := &program{cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	addr := make(chan string, 1)
	go func() {
		// Read as it comes, so that the program never blocks on a full
		// pipe; Wait after the pipe is drained, as exec requires.
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(p.out, sc.Text())
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		io.Copy(io.Discard, stdout)
		p.cmd.Wait()
	}()
	select {
	case p.url = <-addr:
	case <-p.done:
		t.Fatalf("the program exited before it listened:\n%s", p.out)
	case <-time.After(15 * time.Second):
		t.Fatalf("the program did not say where it listens:\n%s", p.out)
	}
	return p
}

// stop sends sig and waits for the program to exit, and returns its exit
// code.
func (p *program) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("the program did not exit after %v:\n%s", sig, p.out)
	}
	return p.cmd.ProcessState.ExitCode()
}

// call sends a request and returns the status and the body.
func (p *program) call(t *testing.T, method, path, contentType, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", method, path, err, p.out)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// signUp posts users and checks that each is created.
func (p *program) signUp(t *testing.T, emails ...string) {
	t.Helper()
	for _, e := range emails {
		name, _, _ := strings.Cut(e, "@")
		if code, body := p.call(t, "POST", "/users", curlForm, fmt.Sprintf(`{"email": %q, "name": %q}`, e, name)); code != http.StatusCreated {
			t.Fatalf("POST /users %s = %d %s", e, code, body)
		}
	}
}

func (p *program) events(t *testing.T, query string) []eventhttp.Envelope {
	t.Helper()
	code, body := p.call(t, "GET", "/events?"+query, "", "")
	if code != http.StatusOK {
		t.Fatalf("GET /events?%s = %d %s", query, code, body)
	}
	var page struct{ Events []eventhttp.Envelope }
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	return page.Events
}

func (p *program) stats(t *testing.T) event.Stats {
	t.Helper()
	code, body := p.call(t, "GET", "/events/stats", "", "")
	var st event.Stats
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
		t.Fatalf("GET /events/stats = %d %s (%v)", code, body, err)
	}
	return st
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The program itself, on one SQLite file, run three times: it answers the
// original design's calls as written and signs users up; a SIGTERM right
// after sign-ups still has every service handle them before it exits; a
// SIGKILL right after sign-ups leaves them to the next start. In the end
// every event in the log has been handled by every service exactly once.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	bin := build(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "userfanout.db")
	config := func(name, extra string) string {
		return writeFile(t, filepath.Join(dir, name), fmt.Sprintf(`
event:
  store: {path: %q}
  handlers: {retry_count: 1}
http:
  addr: "127.0.0.1:0"
%s
analytics:
  fail_every: 4
`, dbPath, extra))
	}
	plain, withToken := config("plain.yaml", ""), config("token.yaml", "  publish_token: s3cret")

	// Run 1: the original design's calls, sign-ups, and a SIGTERM right
	// after the last sign-ups.
	p := startProgram(t, bin, "-config", plain)
	code, body := p.call(t, "POST", "/events", curlForm, seedEvent)
	if code != http.StatusCreated {
		t.Fatalf("POST /events = %d %s", code, body)
	}
	var posted eventhttp.Envelope
	if err := json.Unmarshal([]byte(body), &posted); err != nil || posted.Type != service.TopicUserRegistered || string(posted.Data) != `{"user_id":"123","email":"user@example.com"}` {
		t.Errorf("POST /events answered %s (%v)", body, err)
	}
	p.signUp(t, "ada@example.com", "grace@example.com", "linus@example.com", "barbara@example.com")
	if evs := p.events(t, "aggregate_id=user-123"); len(evs) != 0 {
		t.Errorf("aggregate user-123 has %d events; the posted event has no aggregate_id", len(evs))
	}
	if evs := p.events(t, "aggregate_id=user-2"); len(evs) != 1 || !strings.Contains(string(evs[0].Data), "grace@example.com") {
		t.Errorf("aggregate user-2: %+v, want grace's user.registered", evs)
	}
	for _, q := range []string{"type=user.registered", "since=2024-01-01T00:00:00Z"} {
		if evs := p.events(t, q); len(evs) != 5 {
			t.Errorf("GET /events?%s: %d events, want 5", q, len(evs))
		}
	}
	if evs := p.events(t, "since=2099-01-01T00:00:00Z"); len(evs) != 0 {
		t.Errorf("GET /events?since=2099-…: %d events, want 0", len(evs))
	}
	// 5 events, 4 services; analytics fails the 4th it sees (user 3) until
	// it is dead-lettered.
	deadline := time.Now().Add(10 * time.Second)
	st := p.stats(t)
	for st.Processed+st.Failed < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		st = p.stats(t)
	}
	if st.Published != 5 || st.Processed != 19 || st.Failed != 1 || st.Retried != 1 || st.DeadLettered != 1 ||
		st.Subscribers[service.TopicUserRegistered] != 3 || st.Subscribers["user.>"] != 1 {
		t.Errorf("stats %+v, want 5 published, 19 processed, 1 failed after 1 retry and dead-lettered, 3+1 subscribers", st)
	}
	code, body = p.call(t, "GET", "/events/deadletters", "", "")
	if code != http.StatusOK || strings.Count(body, `"subscription":"analytics"`) != 1 || !strings.Contains(body, `"user_id":"3"`) {
		t.Errorf("GET /events/deadletters = %d %s, want analytics' dead letter of user 3", code, body)
	}
	code, body = p.call(t, "GET", "/users/1", "", "")
	if code != http.StatusOK || !strings.Contains(body, `"display_name":"ada"`) {
		t.Errorf("GET /users/1 = %d %s, want ada with her profile", code, body)
	}
	p.signUp(t, "ken@example.com", "margaret@example.com", "dennis@example.com")
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.out)
	}
	if out := p.out.String(); !strings.Contains(out, "stopped; every event in the store was handled") {
		t.Errorf("the program did not say it handled everything before it stopped:\n%s", out)
	}
	checkHandledOnce(t, data.Options{Driver: data.SQLite, Path: dbPath}, 8, 2)

	// Run 2: with the publish token, and killed right after sign-ups.
	p = startProgram(t, bin, "-config", withToken)
	if code, body := p.call(t, "POST", "/events", curlForm, seedEvent); code != http.StatusUnauthorized {
		t.Errorf("POST /events without the token = %d %s, want 401", code, body)
	}
	if code, body := p.call(t, "POST", "/events", curlForm, strings.Replace(seedEvent, "123", "456", 1), "Authorization", "Bearer s3cret"); code != http.StatusCreated {
		t.Errorf("POST /events with the token = %d %s, want 201", code, body)
	}
	p.signUp(t, "edsger@example.com", "donald@example.com", "frances@example.com")
	p.stop(t, syscall.SIGKILL)

	// Run 3: picks up what run 2 left.
	p = startProgram(t, bin, "-config", plain)
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.out)
	}
	// How many of run 2's events were dead-lettered depends on where the
	// kill fell (the tracker counts afresh in each run): any number.
	checkHandledOnce(t, data.Options{Driver: data.SQLite, Path: dbPath}, 12, -1)
	t.Logf("redelivered events skipped after the SIGKILL: %d", strings.Count(p.out.String(), "event handled before, skipped"))
}

// The program on PostgreSQL: sign-ups and the original design's event,
// a SIGTERM right after them, and every event handled once before it
// exits.
func TestEndToEndPostgres(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	bin := build(t)
	conf := writeFile(t, filepath.Join(t.TempDir(), "pg.yaml"), fmt.Sprintf(`
event: {store: {driver: postgres, dsn: %q}, handlers: {retry_count: 0}}
http: {addr: "127.0.0.1:0"}
analytics: {fail_every: 2}
`, dsn))
	p := startProgram(t, bin, "-config", conf)
	if code, body := p.call(t, "POST", "/events", curlForm, seedEvent); code != http.StatusCreated {
		t.Fatalf("POST /events = %d %s", code, body)
	}
	p.signUp(t, "ada@example.com", "grace@example.com", "linus@example.com")
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, p.out)
	}
	checkHandledOnce(t, data.Options{Driver: data.Postgres, DSN: dsn}, 4, 2)
}

// checkHandledOnce opens the program's database after it exited and checks
// that each of the events in the log (events of them) was handled by each
// service exactly once: one row of its side effect, or, for analytics,
// one row or one dead letter (deadLetters of them, unless it is -1).
func checkHandledOnce(t *testing.T, opts data.Options, events, deadLetters int) {
	t.Helper()
	ctx := context.Background()
	db, err := data.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dead := map[string]bool{}
	dls, err := db.Store().(store.DeadLetterStore).DeadLetters(ctx, service.AnalyticsName, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range dls {
		dead[dl.Record.ID] = true
	}
	if deadLetters >= 0 && len(dead) != deadLetters {
		t.Errorf("%d analytics dead letters, want %d", len(dead), deadLetters)
	}
	count := func(query string, args ...any) int {
		var n int
		if err := db.QueryRow(ctx, query, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := 0
	for rec, err := range store.All(ctx, db.Store(), store.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		var ev service.UserRegistered
		if err := json.Unmarshal(rec.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		id := rec.ID
		got := map[string]int{
			"notifications": count(`SELECT count(*) FROM notifications WHERE event_id = $1`, id),
			"audit_log":     count(`SELECT count(*) FROM audit_log WHERE event_id = $1`, id),
			"profiles":      count(`SELECT count(*) FROM profiles WHERE event_id = $1`, id),
			"analytics":     count(`SELECT count(*) FROM analytics WHERE event_id = $1`, id),
		}
		if dead[id] {
			got["analytics"]++ // handled, and failed
		}
		for table, k := range got {
			if k != 1 {
				t.Errorf("event %s (user %s) has %d rows in %s (dead letter: %v), want 1", id, ev.UserID, k, table, dead[id])
			}
		}
		for _, sub := range []string{service.NotificationName, service.AnalyticsName, service.AuditName, service.ProfileName} {
			k := count(`SELECT count(*) FROM processed_events WHERE subscription = $1 AND event_id = $2`, sub, id)
			if want := map[bool]int{true: 0, false: 1}[sub == service.AnalyticsName && dead[id]]; k != want {
				t.Errorf("event %s: %d processed_events rows of %s, want %d", id, k, sub, want)
			}
		}
	}
	if n != events {
		t.Errorf("%d events in the log, want %d", n, events)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// raceEnabled is set when the tests run with -race, so that the program is
// built with it too.
var raceEnabled bool
