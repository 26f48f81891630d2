package service_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/examples/userfanout/data"
	"github.com/ncore-io/event/examples/userfanout/data/datatest"
	"github.com/ncore-io/event/examples/userfanout/service"
	"github.com/ncore-io/event/store"
)

// The tables in which the services leave their effects, by service.
var effects = map[string]string{
	service.NotificationName: "notifications",
	service.AnalyticsName:    "analytics",
	service.AuditName:        "audit_log",
	service.ProfileName:      "profiles",
}

// fanout is the services running on a real bus with an SQLite store.
type fanout struct {
	db    *data.DB
	bus   *event.Bus[any]
	users *service.UserService
	subs  []*event.Subscription
	log   *syncBuffer
}

func startFanout(t *testing.T, db *data.DB, opts service.Options, busOpts ...event.Option) *fanout {
	t.Helper()
	f := &fanout{db: db, log: &syncBuffer{}}
	opts.Logger = slog.New(slog.NewTextHandler(f.log, nil))
	bus, err := event.New[any](append([]event.Option{event.WithStore(db.Store()), event.WithPollInterval(10 * time.Millisecond)}, busOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	f.bus = bus
	t.Cleanup(func() { f.close(t) })
	if f.subs, err = service.NewServices(db, opts).Subscribe(bus); err != nil {
		t.Fatal(err)
	}
	f.users = service.NewUserService(db, bus)
	return f
}

func (f *fanout) close(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.bus.Close(ctx); err != nil {
		t.Error(err)
	}
}

func (f *fanout) signUp(t *testing.T, emails ...string) {
	t.Helper()
	for _, e := range emails {
		name, _, _ := strings.Cut(e, "@")
		if _, err := f.users.CreateUser(context.Background(), service.CreateUserRequest{Email: e, Name: strings.ToUpper(name[:1]) + name[1:]}); err != nil {
			t.Fatal(err)
		}
	}
}

// count returns the rows of table, per user if user is not empty.
func count(t *testing.T, db *data.DB, table, user string) int {
	t.Helper()
	q := `SELECT count(*) FROM ` + table
	var args []any
	if user != "" {
		q += ` WHERE user_id = $1`
		args = append(args, user)
		if table == "audit_log" {
			q = `SELECT count(*) FROM audit_log WHERE aggregate_id = $1`
			args[0] = service.AggregateID(user)
		}
	}
	var n int
	if err := db.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitFor waits until cond holds, or fails the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitEffects waits until every service has n rows in its table.
func waitEffects(t *testing.T, db *data.DB, n int) {
	t.Helper()
	for sub, table := range effects {
		waitFor(t, fmt.Sprintf("%d rows in %s (%s)", n, table, sub), func() bool { return count(t, db, table, "") >= n })
	}
}

// Each sign-up, and an event posted as eventhttp would post it, is handled
// by each of the four services once.
func TestFanOut(t *testing.T) {
	t.Parallel()
	f := startFanout(t, datatest.SQLite(t), service.Options{})
	f.signUp(t, "ada@example.com", "grace@example.com", "linus@example.com")
	if err := f.bus.Publish(context.Background(), service.TopicUserRegistered, service.UserRegistered{UserID: "123", Email: "user@example.com"}); err != nil {
		t.Fatal(err)
	}
	waitEffects(t, f.db, 4)
	for _, user := range []string{"1", "2", "3", "123"} {
		for sub, table := range effects {
			if table == "audit_log" && user == "123" {
				continue // the audit log knows users by aggregate, which the posted event has none of
			}
			if n := count(t, f.db, table, user); n != 1 {
				t.Errorf("%s: %d rows of user %s in %s, want 1", sub, n, user, table)
			}
		}
	}
	var email, template string
	if err := f.db.QueryRow(context.Background(), `SELECT email, template FROM notifications WHERE user_id = '2'`).Scan(&email, &template); err != nil {
		t.Fatal(err)
	}
	if email != "grace@example.com" || template != "welcome" {
		t.Errorf("notification of user 2: %s to %s, want welcome to grace@example.com", template, email)
	}
	var payload string
	if err := f.db.QueryRow(context.Background(), `SELECT payload FROM audit_log WHERE aggregate_id = 'user-1'`).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	if want := `{"user_id":"1","email":"ada@example.com","name":"Ada"}`; payload != want {
		t.Errorf("audited payload %s, want %s", payload, want)
	}
	waitFor(t, "the stats to show 16 deliveries processed", func() bool { return f.bus.Stats().Processed == 16 })
	if st := f.bus.Stats(); st.Published != 4 || st.Failed != 0 || st.Subscribers[service.TopicUserRegistered] != 3 || st.Subscribers["user.>"] != 1 {
		t.Errorf("stats %+v, want 4 published, none failed, 3 subscribers of user.registered and 1 of user.>", st)
	}
}

// Events delivered again, as after a crash that lost the checkpoints, have
// no second effect: each service finds them in processed_events and skips
// them.
func TestRedeliveryHasNoSecondEffect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := datatest.SQLite(t)
	first := startFanout(t, db, service.Options{})
	first.signUp(t, "ada@example.com", "grace@example.com", "linus@example.com")
	waitEffects(t, db, 3)
	first.close(t)
	saved := map[string]store.Cursor{}
	for sub := range effects {
		cp, err := db.Store().Checkpoint(ctx, sub)
		if err != nil || cp == "" {
			t.Fatalf("checkpoint of %s: %q, %v", sub, cp, err)
		}
		saved[sub] = cp
		if err := db.Store().SetCheckpoint(ctx, sub, ""); err != nil {
			t.Fatal(err)
		}
	}

	again := startFanout(t, db, service.Options{})
	for sub, cp := range saved {
		waitFor(t, sub+" to pass its old checkpoint", func() bool {
			got, err := db.Store().Checkpoint(ctx, sub)
			return err == nil && got == cp
		})
	}
	for sub, table := range effects {
		if n := count(t, db, table, ""); n != 3 {
			t.Errorf("%s: %d rows in %s after the redelivery, want 3", sub, n, table)
		}
	}
	if n := strings.Count(again.log.String(), "event handled before, skipped"); n != 12 {
		t.Errorf("%d redelivered events skipped, want 12 (3 events, 4 services); log:\n%s", n, again.log.String())
	}
}

// The analytics tracker fails every 2nd sign-up until it is dead-lettered;
// the other services are not held up, and a re-drive tracks it.
func TestAnalyticsDeadLetterThenRedrive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const retries = 2
	f := startFanout(t, datatest.SQLite(t), service.Options{AnalyticsFailEvery: 2, AnalyticsAttempts: 1 + retries},
		event.WithRetry(event.RetryPolicy{MaxRetries: retries, InitialInterval: time.Millisecond}))
	f.signUp(t, "ada@example.com", "grace@example.com", "linus@example.com")
	var dls []store.DeadLetterRecord
	waitFor(t, "a dead letter of analytics", func() bool {
		var err error
		dls, err = f.bus.DeadLetters(ctx, service.AnalyticsName, 0)
		return err == nil && len(dls) > 0
	})
	waitFor(t, "the third sign-up to be tracked", func() bool { return count(t, f.db, "analytics", "3") == 1 })
	if len(dls) != 1 || dls[0].Attempts != 1+retries || !strings.Contains(dls[0].Error, "tracker unavailable") {
		t.Fatalf("dead letters %+v, want the 2nd sign-up's, after %d attempts", dls, 1+retries)
	}
	if n := count(t, f.db, "analytics", "2"); n != 0 {
		t.Errorf("the dead-lettered sign-up was tracked %d times", n)
	}
	for _, sub := range []string{service.NotificationName, service.AuditName, service.ProfileName} {
		waitFor(t, sub+" to handle the sign-ups", func() bool { return count(t, f.db, effects[sub], "") == 3 })
		if n := count(t, f.db, effects[sub], "2"); n != 1 {
			t.Errorf("%s handled user 2 %d times, want 1", sub, n)
		}
	}
	waitFor(t, "the stats to count the failure", func() bool { return f.bus.Stats().Failed == 1 })
	if st := f.bus.Stats(); st.Retried != retries || st.DeadLettered != 1 {
		t.Errorf("stats: %d retried, %d dead-lettered; want %d and 1", st.Retried, st.DeadLettered, retries)
	}

	if err := f.bus.Redrive(ctx, service.AnalyticsName, dls[0].Record.ID); err != nil {
		t.Fatal(err)
	}
	if n := count(t, f.db, "analytics", "2"); n != 1 {
		t.Errorf("after the re-drive, user 2 tracked %d times, want 1", n)
	}
	if dls, err := f.bus.DeadLetters(ctx, service.AnalyticsName, 0); err != nil || len(dls) != 0 {
		t.Errorf("dead letters after the re-drive: %v, %v; want none", dls, err)
	}
}

// A second user.registered for a user who has a profile leaves the profile
// as the first made it; an event without a name takes the email's local
// part.
func TestProfileKeepsTheFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := startFanout(t, datatest.SQLite(t), service.Options{})
	for _, name := range []string{"", "Second"} {
		if err := f.bus.Publish(ctx, service.TopicUserRegistered, service.UserRegistered{UserID: "123", Email: "user@example.com", Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "both events audited", func() bool { return count(t, f.db, "audit_log", "") == 2 })
	waitFor(t, "the profile service to handle both", func() bool {
		return strings.Contains(f.log.String(), "user has a profile already")
	})
	p, err := service.NewServices(f.db, service.Options{}).Profile.Get(ctx, "123")
	if err != nil {
		t.Fatal(err)
	}
	if p.DisplayName != "user" {
		t.Errorf("display name %q, want user, from the first event's email", p.DisplayName)
	}
	if n := count(t, f.db, "profiles", ""); n != 1 {
		t.Errorf("%d profiles, want 1", n)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
