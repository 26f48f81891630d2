package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// config.yaml is what the program runs with when it has no -config.
func TestConfigFileHoldsTheDefaults(t *testing.T) {
	t.Parallel()
	c, err := LoadConfig("config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c != Defaults() {
		t.Errorf("config.yaml:\n%+v\nDefaults():\n%+v", c, Defaults())
	}
	for _, empty := range []string{"", "# nothing\n", "event:\n", "event:\n  bus:\n"} {
		if c, err := ParseConfig("empty.yaml", []byte(empty)); err != nil || c != Defaults() {
			t.Errorf("ParseConfig(%q) = %+v, %v; want the defaults", empty, c, err)
		}
	}
}

// Every key is read into its field.
func TestEveryKeyIsRead(t *testing.T) {
	t.Parallel()
	sqlite := `
event:
  bus: {buffer_size: 0, workers: 2}
  store:
    enabled: true
    driver: sqlite
    path: /var/lib/app/events.db
    retention_days: 0
  handlers:
    async: false
    timeout: 1m30s
    retry_count: 0
http:
  addr: ":9090"
  publish_token: s3cret
analytics:
  fail_every: 0
`
	want := Defaults()
	want.Event.Bus.BufferSize, want.Event.Bus.Workers = 0, 2
	want.Event.Store.Path, want.Event.Store.RetentionDays = "/var/lib/app/events.db", 0
	want.Event.Handlers.Async, want.Event.Handlers.Timeout, want.Event.Handlers.RetryCount = false, 90*time.Second, 0
	want.HTTP.Addr, want.HTTP.PublishToken = ":9090", "s3cret"
	want.Analytics.FailEvery = 0
	if c, err := ParseConfig("sqlite.yaml", []byte(sqlite)); err != nil || c != want {
		t.Errorf("ParseConfig =\n%+v, %v\nwant\n%+v", c, err, want)
	}

	aliased := "event:\n  bus:\n    workers: &n 7\n    buffer_size: *n\n"
	want = Defaults()
	want.Event.Bus.Workers, want.Event.Bus.BufferSize = 7, 7
	if c, err := ParseConfig("aliased.yaml", []byte(aliased)); err != nil || c != want {
		t.Errorf("ParseConfig with an alias =\n%+v, %v\nwant\n%+v", c, err, want)
	}

	postgres := "event:\n  store:\n    driver: postgres\n    dsn: postgres://app@db:5432/app\n"
	want = Defaults()
	want.Event.Store.Driver, want.Event.Store.DSN = "postgres", "postgres://app@db:5432/app"
	if c, err := ParseConfig("postgres.yaml", []byte(postgres)); err != nil || c != want {
		t.Errorf("ParseConfig =\n%+v, %v\nwant\n%+v", c, err, want)
	}

	// A key added to Config must be added here too.
	var c Config
	for _, k := range c.keys() {
		leaf := k.name[strings.LastIndex(k.name, ".")+1:]
		if !strings.Contains(sqlite, leaf+":") && !strings.Contains(postgres, leaf+":") {
			t.Errorf("key %s is not tested", k.name)
		}
	}
}

// A bad configuration is refused with an error naming the file, the line
// and the key; all of the errors, not only the first.
func TestBadConfigIsRefused(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		yaml string
		want []string
	}{
		{"event:\n  bus:\n    bufer_size: 10\n", []string{"c.yaml:3: event.bus.bufer_size: unknown key; known keys under event.bus: buffer_size, workers"}},
		{"events:\n  bus: {}\n", []string{"c.yaml:1: events: unknown key; known keys: analytics, event, http"}},
		{"event:\n  bus:\n    workers: ten\n", []string{`c.yaml:3: event.bus.workers: want an integer, got "ten"`}},
		{"event:\n  bus:\n    workers: 2.5\n", []string{`event.bus.workers: want an integer, got "2.5"`}},
		{"event:\n  bus:\n    workers: \"4\"\n", []string{`event.bus.workers: want an integer, got "4"`}},
		{"event:\n  bus:\n    workers:\n", []string{"c.yaml:3: event.bus.workers: want an integer, got no value"}},
		{"event:\n  bus:\n    workers: [1]\n", []string{"event.bus.workers: want an integer, got a list"}},
		{"event:\n  bus:\n    workers: -1\n", []string{"c.yaml:3: event.bus.workers: must be at least 1, got -1"}},
		{"event:\n  bus:\n    workers: 0\n", []string{"event.bus.workers: must be at least 1, got 0"}},
		{"event:\n  bus:\n    buffer_size: -5\n", []string{"event.bus.buffer_size: must be 0 (unbuffered) or more, got -5"}},
		{"event:\n  bus: 3\n", []string{`c.yaml:2: event.bus: want a mapping of keys (buffer_size, workers), got "3"`}},
		{"event:\n  store:\n    enabled: false\n", []string{"c.yaml:3: event.store.enabled: false is not supported", "transactional outbox"}},
		{"event:\n  store:\n    enabled: yes\n", []string{`event.store.enabled: want true or false, got "yes"`}},
		{"event:\n  store:\n    driver: mysql\n", []string{`c.yaml:3: event.store.driver: want sqlite or postgres, got "mysql"`}},
		{"event:\n  store:\n    driver: postgres\n", []string{"event.store.dsn: required when event.store.driver is postgres"}},
		{"event:\n  store:\n    driver: postgres\n    dsn: postgres://x\n    path: a.db\n", []string{"c.yaml:5: event.store.path: set, but event.store.driver is postgres"}},
		{"event:\n  store:\n    dsn: postgres://x\n", []string{"c.yaml:3: event.store.dsn: set, but event.store.driver is sqlite"}},
		{"event:\n  store:\n    path: \"\"\n", []string{"c.yaml:3: event.store.path: must name the SQLite file"}},
		{"event:\n  store:\n    retention_days: -1\n", []string{"event.store.retention_days: must be from 0 (keep for ever) to 36500, got -1"}},
		{"event:\n  handlers:\n    timeout: 30\n", []string{`c.yaml:3: event.handlers.timeout: want a duration with its unit, such as 30s or 1m30s, got "30"`}},
		{"event:\n  handlers:\n    timeout: soon\n", []string{`event.handlers.timeout: want a duration with its unit`}},
		{"event:\n  handlers:\n    timeout: -1s\n", []string{"event.handlers.timeout: must be 0 (none) or positive, got -1s"}},
		{"event:\n  handlers:\n    retry_count: -3\n", []string{"event.handlers.retry_count: must be 0 or more, got -3"}},
		{"http:\n  addr: 8080\n", []string{`c.yaml:2: http.addr: want a string, got "8080" (quote it)`}},
		{"http:\n  addr: localhost\n", []string{`http.addr: want host:port, such as 127.0.0.1:8080, got "localhost"`}},
		{"http:\n  addr: \"localhost:http\"\n", []string{`http.addr: port must be a number from 0 to 65535, got "http"`}},
		{"http:\n  publish_token: \"a b\"\n", []string{"http.publish_token: must not contain spaces"}},
		{"http:\n  publish_token: 12345\n", []string{`http.publish_token: want a string, got "12345" (quote it)`}},
		{"analytics:\n  fail_every: -2\n", []string{"analytics.fail_every: must be 0 (never fail) or more, got -2"}},
		{"http:\n  addr: \"a:1\"\nhttp:\n  addr: \"b:2\"\n", []string{"c.yaml:3: http: given twice (first on line 1)"}},
		{"- event\n", []string{"c.yaml:1: the file must hold keys"}},
		{"event: [\n", []string{"c.yaml: yaml:"}},
		// Every error, not only the first.
		{"event:\n  bus:\n    workers: x\n    buffer_size: y\nhttp:\n  port: 1\nanalytics:\n  fail_every: -1\n", []string{
			"c.yaml:3: event.bus.workers", "c.yaml:4: event.bus.buffer_size", "c.yaml:6: http.port: unknown key", "c.yaml:8: analytics.fail_every: must be"}},
	} {
		_, err := ParseConfig("c.yaml", []byte(c.yaml))
		if err == nil {
			t.Errorf("ParseConfig(%q) succeeded", c.yaml)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseConfig(%q) = %v\nwant an error containing %q", c.yaml, err, w)
			}
		}
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); !strings.Contains(err.Error(), "missing.yaml: no such file") {
		t.Errorf("LoadConfig of a missing file = %v", err)
	}
}

// The event.* keys reach the bus: async false runs handlers inside Publish,
// retry_count and timeout govern attempts, retention_days deletes old
// events.
func TestBusOptionsHonourTheKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "events.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := uuid.Must(uuid.NewV7()).String()
	if err := s.Append(ctx, []store.Record{{ID: old, Topic: "old", Time: time.Now().Add(-100 * 24 * time.Hour), Payload: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	c := Defaults()
	c.Event.Handlers.Async = false
	c.Event.Handlers.RetryCount = 2
	c.Event.Handlers.Timeout = time.Minute
	c.Event.Store.RetentionDays = 90
	bus, err := event.New[int](c.busOptions(s, nil)...)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close(ctx)

	var calls atomic.Int32
	var deadline time.Time
	_, err = event.Subscribe(bus, "test", func(ctx context.Context, ev event.Event[int]) error {
		calls.Add(1)
		deadline, _ = ctx.Deadline()
		return errors.New("fails")
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := bus.Publish(ctx, "test", 1); err != nil {
		t.Fatal(err)
	}
	// Synchronous: every attempt ran before Publish returned.
	if n := calls.Load(); n != 3 {
		t.Errorf("the handler ran %d times by the time Publish returned, want 3 (1 + retry_count 2)", n)
	}
	if d := deadline.Sub(start); d < 59*time.Second || d > 61*time.Second {
		t.Errorf("the handler's deadline was %v away, want the 1m timeout", d)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, err := s.Load(ctx, old)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 100-day-old event is still there (%v) with retention_days 90", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
