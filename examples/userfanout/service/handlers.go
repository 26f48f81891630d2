package service

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/examples/userfanout/data"
)

// The services that react to user.registered, each a durable subscription
// under its name:
//
//	notification  user.registered  sends the welcome email (a notifications row, and a log line)
//	analytics     user.registered  tracks the sign-up (an analytics row); its tracker fails now and then
//	audit         user.>           records every user event (an audit_log row)
//	profile       user.registered  creates the user's profile (a profiles row)
//
// They are durable for two reasons. Events published in a transaction
// (Bus.PublishTx, the outbox) reach only durable subscriptions, which read
// the event log; an in-process subscription never sees them. And a durable
// subscription keeps a checkpoint and resumes from it, so an event stored
// before a crash or a restart is handled after it.
//
// Delivery is at least once: after a crash, the events since the last
// checkpoint come again. Each service therefore records the IDs of the
// events it handled in processed_events, in the transaction of its side
// effect, and skips an event it finds there: every event has its effect
// once.
const (
	NotificationName = "notification"
	AnalyticsName    = "analytics"
	AuditName        = "audit"
	ProfileName      = "profile"
)

// Options configure the services.
type Options struct {
	// Logger receives the services' log lines; nil logs nothing.
	Logger *slog.Logger
	// AnalyticsFailEvery makes the analytics tracker fail every nth
	// sign-up it is given, on its first AnalyticsAttempts attempts, so
	// that the event is retried and then dead-lettered (AnalyticsAttempts
	// is the subscription's 1 + retry count); a re-drive afterwards
	// succeeds. 0 never fails.
	AnalyticsFailEvery int
	AnalyticsAttempts  int
}

// Services are the four subscribers. They are safe for concurrent use.
type Services struct {
	Notification *Notification
	Analytics    *Analytics
	Audit        *Audit
	Profile      *Profile
}

// NewServices returns the services, which keep what they do in db.
func NewServices(db *data.DB, opts Options) *Services {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Services{
		Notification: &Notification{db: db, log: log.With("service", NotificationName)},
		Analytics: &Analytics{db: db, log: log.With("service", AnalyticsName),
			tracker: tracker{failEvery: opts.AnalyticsFailEvery, attempts: max(opts.AnalyticsAttempts, 1), tries: map[uuid.UUID]int{}}},
		Audit:   &Audit{db: db, log: log.With("service", AuditName)},
		Profile: &Profile{db: db, log: log.With("service", ProfileName)},
	}
}

// Subscribe subscribes the services to bus, each as a durable subscription
// under its name, and returns the subscriptions. The bus needs a store.
func (s *Services) Subscribe(bus event.Subscriber[any]) ([]*event.Subscription, error) {
	var subs []*event.Subscription
	for _, f := range []func() (*event.Subscription, error){
		func() (*event.Subscription, error) {
			return event.Subscribe(bus, TopicUserRegistered, s.Notification.Handle, event.Durable(NotificationName))
		},
		func() (*event.Subscription, error) {
			return event.Subscribe(bus, TopicUserRegistered, s.Analytics.Handle, event.Durable(AnalyticsName))
		},
		func() (*event.Subscription, error) {
			return event.Subscribe(bus, "user.>", s.Audit.Handle, event.Durable(AuditName))
		},
		func() (*event.Subscription, error) {
			return event.Subscribe(bus, TopicUserRegistered, s.Profile.Handle, event.Durable(ProfileName))
		},
	} {
		sub, err := f()
		if err != nil {
			for _, sub := range subs {
				sub.Unsubscribe()
			}
			return nil, fmt.Errorf("service: subscribe: %w", err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// Notification sends the welcome email. Sending is writing it to the
// notifications table, from which a real service's mailer would take it;
// here it is also logged. It is safe for concurrent use.
type Notification struct {
	db  *data.DB
	log *slog.Logger
}

// Handle sends the welcome email to the user ev announces.
func (n *Notification) Handle(ctx context.Context, ev event.Event[UserRegistered]) error {
	sent, err := once(ctx, n.db, NotificationName, ev.ID, func(tx data.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO notifications (event_id, user_id, email, template, sent_at) VALUES ($1, $2, $3, 'welcome', $4)`,
			ev.ID.String(), ev.Payload.UserID, ev.Payload.Email, now())
		return err
	})
	if err != nil {
		return fmt.Errorf("notification: %w", err)
	}
	if sent {
		n.log.InfoContext(ctx, "welcome email sent", "to", ev.Payload.Email, "user_id", ev.Payload.UserID)
	} else {
		skipped(ctx, n.log, ev.ID)
	}
	return nil
}

// Analytics tracks sign-ups per email domain. Its tracker fails now and
// then (see [Options].AnalyticsFailEvery), to show retries and dead
// letters. It is safe for concurrent use.
type Analytics struct {
	db      *data.DB
	log     *slog.Logger
	tracker tracker
}

// Handle tracks the sign-up ev announces.
func (a *Analytics) Handle(ctx context.Context, ev event.Event[UserRegistered]) error {
	_, domain, _ := strings.Cut(ev.Payload.Email, "@")
	tracked, err := once(ctx, a.db, AnalyticsName, ev.ID, func(tx data.Tx) error {
		if err := a.tracker.track(ev.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO analytics (event_id, user_id, email_domain, tracked_at) VALUES ($1, $2, $3, $4)`,
			ev.ID.String(), ev.Payload.UserID, domain, now())
		return err
	})
	if err != nil {
		a.log.WarnContext(ctx, "tracking failed", "user_id", ev.Payload.UserID, "event_id", ev.ID, "error", err)
		return fmt.Errorf("analytics: %w", err)
	}
	if tracked {
		a.log.InfoContext(ctx, "sign-up tracked", "user_id", ev.Payload.UserID, "domain", domain)
	} else {
		skipped(ctx, a.log, ev.ID)
	}
	return nil
}

// tracker stands for an analytics backend that is down now and then: it
// fails every failEvery-th event it is given, on that event's first
// attempts tries, and takes it after that.
type tracker struct {
	failEvery, attempts int

	mu    sync.Mutex
	n     int               // events seen
	tries map[uuid.UUID]int // failed tries of the events it is failing
}

func (t *tracker) track(id uuid.UUID) error {
	if t.failEvery <= 0 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	tries, failing := t.tries[id]
	if !failing {
		if t.n++; t.n%t.failEvery != 0 {
			return nil
		}
	}
	if tries >= t.attempts {
		delete(t.tries, id)
		return nil
	}
	t.tries[id] = tries + 1
	return fmt.Errorf("tracker unavailable for this sign-up (refusal %d of %d)", tries+1, t.attempts)
}

// Audit records every user event: its ID, topic, aggregate, time and
// payload. It is safe for concurrent use.
type Audit struct {
	db  *data.DB
	log *slog.Logger
}

// Handle records ev. It takes events of any payload type, so a new user
// event is audited without a change here.
func (a *Audit) Handle(ctx context.Context, ev event.Event[any]) error {
	payload, err := json.Marshal(ev.Payload)
	if err != nil {
		return fmt.Errorf("audit: encode the payload of %s: %w", ev.ID, err)
	}
	recorded, err := once(ctx, a.db, AuditName, ev.ID, func(tx data.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO audit_log (event_id, topic, aggregate_id, event_time, payload, recorded_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			ev.ID.String(), ev.Topic, ev.AggregateID, ev.Time.UTC().Format(time.RFC3339Nano), string(payload), now())
		return err
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if recorded {
		a.log.InfoContext(ctx, "event recorded", "topic", ev.Topic, "event_id", ev.ID, "position", ev.Position)
	} else {
		skipped(ctx, a.log, ev.ID)
	}
	return nil
}

// Profile creates each new user's profile, and reads it back. It is safe
// for concurrent use.
type Profile struct {
	db  *data.DB
	log *slog.Logger
}

// UserProfile is a user's profile.
type UserProfile struct {
	UserID      string    `json:"-"`
	DisplayName string    `json:"display_name"`
	CreatedAt   time.Time `json:"created_at"`
}

// ErrNoProfile is matched by the error of [Profile.Get] for a user without
// a profile (yet).
var ErrNoProfile = errors.New("no profile")

// Handle creates the profile of the user ev announces. A user who has one
// already (a second user.registered for the same user ID, posted to
// /events) keeps it.
func (p *Profile) Handle(ctx context.Context, ev event.Event[UserRegistered]) error {
	name := ev.Payload.Name
	if name == "" {
		name, _, _ = strings.Cut(ev.Payload.Email, "@")
	}
	created := false
	handled, err := once(ctx, p.db, ProfileName, ev.ID, func(tx data.Tx) error {
		n, err := tx.Exec(ctx, `INSERT INTO profiles (user_id, display_name, event_id, created_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (user_id) DO NOTHING`, ev.Payload.UserID, name, ev.ID.String(), now())
		created = n == 1
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("profile: %w", err)
	case !handled:
		skipped(ctx, p.log, ev.ID)
	case created:
		p.log.InfoContext(ctx, "profile created", "user_id", ev.Payload.UserID, "display_name", name)
	default:
		p.log.InfoContext(ctx, "user has a profile already", "user_id", ev.Payload.UserID, "event_id", ev.ID)
	}
	return nil
}

// Get returns the profile of the user with the given ID, or an error
// matching [ErrNoProfile].
func (p *Profile) Get(ctx context.Context, userID string) (UserProfile, error) {
	pr := UserProfile{UserID: userID}
	var created string
	err := p.db.QueryRow(ctx, `SELECT display_name, created_at FROM profiles WHERE user_id = $1`, userID).Scan(&pr.DisplayName, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return UserProfile{}, fmt.Errorf("profile of user %s: %w", userID, ErrNoProfile)
	}
	if err != nil {
		return UserProfile{}, fmt.Errorf("profile of user %s: %w", userID, err)
	}
	if pr.CreatedAt, err = time.Parse(time.RFC3339Nano, created); err != nil {
		return UserProfile{}, fmt.Errorf("profile of user %s: created_at: %w", userID, err)
	}
	return pr, nil
}

// once runs effect in a transaction that also records that subscription
// handled event id, unless it has already: at-least-once delivery made
// once in effect. It reports whether effect ran (and committed). A failed
// effect rolls the record back too, so a retry runs it again.
func once(ctx context.Context, db *data.DB, subscription string, id uuid.UUID, effect func(tx data.Tx) error) (bool, error) {
	ran := false
	err := db.InTx(ctx, func(tx data.Tx) error {
		n, err := tx.Exec(ctx, `INSERT INTO processed_events (subscription, event_id, handled_at) VALUES ($1, $2, $3)
			ON CONFLICT (subscription, event_id) DO NOTHING`, subscription, id.String(), now())
		if err != nil || n == 0 {
			return err
		}
		ran = true
		return effect(tx)
	})
	return ran && err == nil, err
}

func skipped(ctx context.Context, log *slog.Logger, id uuid.UUID) {
	log.InfoContext(ctx, "event handled before, skipped", "event_id", id)
}

// now is the time to store, as the users table has it.
func now() string { return time.Now().UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano) }
