// Command userfanout is the original design's event-driven user service: a
// user signs up (POST /users), the user service inserts the user and
// publishes user.registered in the same transaction (the transactional
// outbox), and four services react to the event, each on its own:
// notification sends the welcome email, analytics tracks the sign-up (its
// tracker fails now and then, so retries and dead letters show), audit
// records the event, and profile creates the user's profile. The event API
// of package eventhttp is mounted at /events: publish, list, stream, stats
// and dead letters, with the original design's curl calls working as
// written.
//
// Events and the service's tables live in one database: an SQLite file by
// default, or PostgreSQL. The four services are durable subscriptions: they
// resume from their checkpoints after a restart, and each records the
// events it handled, so that an event redelivered after a crash has its
// effect once.
//
//	go run ./examples/userfanout                  # serve on 127.0.0.1:8080 until Ctrl-C
//	go run ./examples/userfanout -smoke           # sign a few users up, print the stats, exit
//	go run ./examples/userfanout -config examples/userfanout/config.yaml -addr 127.0.0.1:9090
//
// On SIGINT or SIGTERM it stops taking requests, finishes those in
// progress, waits (up to 10s) until the services have handled every event
// in the store, and exits; what is not handled by then is handled on the
// next start. A second signal stops it at once.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/examples/userfanout/data"
	"github.com/ncore-io/event/examples/userfanout/handler"
	"github.com/ncore-io/event/examples/userfanout/service"
	"github.com/ncore-io/event/store"
)

// Bounds of the shutdown.
const (
	// drainTimeout bounds finishing the requests in progress and handling
	// the events in the store.
	drainTimeout = 10 * time.Second
	// closeTimeout bounds closing the bus after that: the subscriptions
	// finish the event in hand and save their checkpoints.
	closeTimeout = 5 * time.Second
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the program and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("userfanout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration `file` (YAML; see config.yaml); without it, the defaults, which are config.yaml's values")
	addr := fs.String("addr", "", "listen `address`, host:port, overriding http.addr")
	smoke := fs.Bool("smoke", false, "sign a few users up over HTTP, wait for the services to handle them, print the stats and exit; "+
		"without -config it runs on a temporary SQLite file and a free port")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "userfanout: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg := Defaults()
	if *configPath != "" {
		var err error
		if cfg, err = LoadConfig(*configPath); err != nil {
			fmt.Fprintln(stderr, "userfanout:", err)
			return 1
		}
	}
	if *smoke && *configPath == "" {
		dir, err := os.MkdirTemp("", "userfanout-")
		if err != nil {
			fmt.Fprintln(stderr, "userfanout:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		cfg.Event.Store.Path = filepath.Join(dir, "userfanout.db")
		cfg.HTTP.Addr = "127.0.0.1:0"
	}
	if *addr != "" {
		if err := checkAddr(*addr); err != nil {
			fmt.Fprintln(stderr, "userfanout: -addr:", err)
			return 2
		}
		cfg.HTTP.Addr = *addr
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := start(ctx, cfg, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "userfanout:", err)
		return 1
	}
	if *smoke {
		err = a.smoke(ctx)
	} else {
		a.printTry()
		select {
		case <-ctx.Done():
		case err = <-a.serveErr:
		}
	}
	// From here a second signal ends the program at once: what is not
	// handled stays in the store, for the next start.
	stop()
	if err := errors.Join(err, a.shutdown()); err != nil {
		fmt.Fprintln(stderr, "userfanout:", err)
		return 1
	}
	return 0
}

// app is the running service.
type app struct {
	cfg      Config
	out      io.Writer
	log      *slog.Logger
	db       *data.DB
	bus      *event.Bus[any]
	subs     []*event.Subscription // the durable subscriptions
	srv      *http.Server
	url      string // where it listens, http://host:port
	serveErr chan error
}

// start opens the database, starts the bus, the services and the HTTP
// server.
func start(ctx context.Context, cfg Config, out io.Writer) (_ *app, err error) {
	a := &app{cfg: cfg, out: out, log: newLogger(out), serveErr: make(chan error, 1)}
	var undo []func()
	defer func() {
		if err != nil {
			for _, f := range slices.Backward(undo) {
				f()
			}
		}
	}()
	if a.db, err = data.Open(ctx, cfg.dataOptions(a.log)); err != nil {
		return nil, err
	}
	undo = append(undo, func() { a.db.Close() })
	opts := append(cfg.busOptions(a.db.Store(), a.log), event.WithTypes(service.UserRegistered{}))
	if a.bus, err = event.New[any](opts...); err != nil {
		return nil, err
	}
	undo = append(undo, func() {
		cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		a.bus.Close(cctx)
	})
	services := service.NewServices(a.db, service.Options{
		Logger:             a.log,
		AnalyticsFailEvery: cfg.Analytics.FailEvery,
		AnalyticsAttempts:  1 + cfg.Event.Handlers.RetryCount,
	})
	if a.subs, err = services.Subscribe(a.bus); err != nil {
		return nil, err
	}
	users := service.NewUserService(a.db, a.bus)
	api, err := handler.New(a.bus, users, services.Profile, handler.Options{PublishToken: cfg.HTTP.PublishToken, Logger: a.log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Addr)
	if err != nil {
		return nil, fmt.Errorf("http.addr: %w", err)
	}
	a.url = "http://" + ln.Addr().String()
	a.srv = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	// Shutdown waits for requests, but an event stream lasts until its
	// client leaves: end the streams when Shutdown begins.
	a.srv.RegisterOnShutdown(api.Close)
	go func() {
		if err := a.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			a.serveErr <- fmt.Errorf("http: %w", err)
		}
	}()
	fmt.Fprintf(out, "userfanout: listening on %s, events in the %s\n", a.url, a.db)
	return a, nil
}

// newLogger returns the logger of the services and the bus: text lines
// without the time, which the reader of a terminal does not need.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// printTry prints what to try: the original design's calls, and the
// service's own.
func (a *app) printTry() {
	auth := ""
	if a.cfg.HTTP.PublishToken != "" {
		auth = ` -H 'Authorization: Bearer <http.publish_token>'`
	}
	fmt.Fprintf(a.out, `Try:
  curl -X POST %[1]s/users -d '{"email": "ada@example.com", "name": "Ada Lovelace"}'
  curl %[1]s/users/1
  curl -X POST %[1]s/events%[2]s -d '{"type": "user.registered", "data": {"user_id": "123", "email": "user@example.com"}}'
  curl '%[1]s/events?aggregate_id=user-1'
  curl '%[1]s/events?type=user.registered'
  curl '%[1]s/events?since=2024-01-01T00:00:00Z'
  curl %[1]s/events/stats
  curl %[1]s/events/deadletters%[2]s
Stop with Ctrl-C: it first handles the events already stored (a second Ctrl-C stops at once).
`, a.url, auth)
}

// shutdown stops the service: no more requests, the requests in progress
// finished, every event in the store handled by the services (within
// drainTimeout; the rest on the next start), then the bus and the database
// closed.
func (a *app) shutdown() error {
	fmt.Fprintln(a.out, "userfanout: stopping: finishing the requests in progress, then the events stored")
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	var errs []error
	if err := a.srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("http: shutdown: %w", err))
	}
	// Bus.Close waits only for the events this bus appended itself (the
	// ones posted to /events); the sign-ups went through the outbox, in
	// the user's transaction. CatchUp waits for the subscriptions to
	// handle those as well: every event in the store, with the requests
	// now finished.
	left, err := drain(ctx, a.bus, a.db.Store(), a.subs)
	cctx, ccancel := context.WithTimeout(context.Background(), closeTimeout)
	defer ccancel()
	if err := a.bus.Close(cctx); err != nil {
		errs = append(errs, err)
	}
	if err := a.db.Close(); err != nil {
		errs = append(errs, err)
	}
	switch {
	case err == nil:
		fmt.Fprintln(a.out, "userfanout: stopped; every event in the store was handled")
	case len(left) > 0:
		var parts []string
		for _, sub := range a.subs {
			if n := left[sub.Name()]; n > 0 {
				part := fmt.Sprintf("%s %d", sub.Name(), n)
				if err := sub.Err(); err != nil {
					part += fmt.Sprintf(" (%v)", err) // why it could not go on
				}
				parts = append(parts, part)
			}
		}
		fmt.Fprintf(a.out, "userfanout: stopped; left for the next start: %s\n", strings.Join(parts, ", "))
	default:
		errs = append(errs, fmt.Errorf("waiting for the services to handle the events stored: %w", err))
	}
	return errors.Join(errs...)
}

// drain waits until the bus's durable subscriptions, subs, have handled
// every event in st that they take (Bus.CatchUp). When ctx ends first,
// drain returns how many events each subscription has left, and the error.
func drain[T any](ctx context.Context, bus *event.Bus[T], st store.Store, subs []*event.Subscription) (map[string]int, error) {
	err := bus.CatchUp(ctx)
	if err == nil {
		return nil, nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	left, _ := backlog(cctx, st, subs, store.MaxReadLimit)
	return left, err
}

// backlog counts, for each subscription, up to limit events after its
// checkpoint that match its pattern, leaving out those with none.
func backlog(ctx context.Context, st store.Store, subs []*event.Subscription, limit int) (map[string]int, error) {
	left := map[string]int{}
	for _, sub := range subs {
		cp, err := st.Checkpoint(ctx, sub.Name())
		if err != nil {
			return nil, err
		}
		n := 0
		for _, err := range store.All(ctx, st, store.Query{Topic: sub.Pattern(), After: cp}) {
			if err != nil {
				return nil, err
			}
			if n++; n >= limit {
				break
			}
		}
		if n > 0 {
			left[sub.Name()] = n
		}
	}
	return left, nil
}

// smoke signs users up and posts the original design's event over HTTP,
// waits for the services to handle them, and prints the stats.
func (a *app) smoke(ctx context.Context) error {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	call := func(method, path, contentType, body string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, method, a.url+path, strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if a.cfg.HTTP.PublishToken != "" && strings.HasPrefix(path, "/events") {
			req.Header.Set("Authorization", "Bearer "+a.cfg.HTTP.PublishToken)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, "", err
		}
		shown := bytes.TrimSpace(b)
		if path == "/events/stats" {
			var indented bytes.Buffer
			if json.Indent(&indented, shown, "", "  ") == nil {
				shown = indented.Bytes()
			}
		}
		fmt.Fprintf(a.out, "%s %s → %d %s\n", method, path, resp.StatusCode, shown)
		return resp.StatusCode, string(b), nil
	}
	for _, u := range []service.CreateUserRequest{
		{Email: "ada@example.com", Name: "Ada Lovelace"},
		{Email: "grace@example.com", Name: "Grace Hopper"},
		{Email: "linus@example.com", Name: "Linus Torvalds"},
	} {
		body, _ := json.Marshal(u)
		code, _, err := call(http.MethodPost, "/users", "application/json", string(body))
		if err != nil {
			return err
		}
		if code != http.StatusCreated && code != http.StatusConflict { // 409: a store of an earlier run
			return fmt.Errorf("POST /users answered %d", code)
		}
	}
	// The original design's example, sent as curl -d sends it.
	code, _, err := call(http.MethodPost, "/events", "application/x-www-form-urlencoded",
		`{"type": "user.registered", "data": {"user_id": "123", "email": "user@example.com"}}`)
	if err != nil {
		return err
	}
	if code != http.StatusCreated {
		return fmt.Errorf("POST /events answered %d", code)
	}
	wctx, cancel := context.WithTimeout(ctx, drainTimeout)
	defer cancel()
	if left, err := drain(wctx, a.bus, a.db.Store(), a.subs); err != nil {
		return fmt.Errorf("the services did not handle every event (%v left): %w", left, err)
	}
	for _, path := range []string{"/users/1", "/events/stats"} {
		if code, _, err := call(http.MethodGet, path, "", ""); err != nil || code != http.StatusOK {
			return fmt.Errorf("GET %s answered %d: %v", path, code, err)
		}
	}
	return nil
}
