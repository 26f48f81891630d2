// Package service holds the user service, which registers users and
// announces them with a user.registered event, and the services that react
// to that event: notification, analytics, audit and profile (see
// handlers.go).
package service

import (
	"context"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/examples/userfanout/data"
	"github.com/ncore-io/event/examples/userfanout/data/repository"
)

// TopicUserRegistered is the topic of [UserRegistered] events.
const TopicUserRegistered = "user.registered"

// UserRegistered is published when a user signs up. Its JSON form is the
// data of the original design's example, {"user_id": "123", "email":
// "user@example.com"}, with the name when there is one.
type UserRegistered struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	Name   string `json:"name,omitempty"`
}

// AggregateID returns the aggregate ID of a user's events: "user-" and
// the user's ID, as in GET /events?aggregate_id=user-123.
func AggregateID(userID string) string { return "user-" + userID }

// CreateUserRequest is what [UserService.CreateUser] takes: the body of
// POST /users.
type CreateUserRequest struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

// InputError is the error of a request with a field that is not valid. It
// names the field.
type InputError struct {
	Field  string // the JSON name of the field
	Reason string
}

// Error says which field is wrong, and why.
func (e *InputError) Error() string { return e.Field + ": " + e.Reason }

// UserService registers users. It depends on [event.TxPublisher] rather
// than on the bus, so that its tests can use eventtest.MockBus. It is safe
// for concurrent use.
type UserService struct {
	db     *data.DB
	users  repository.Users
	events event.TxPublisher[any]
}

// NewUserService returns a service that stores users in db and publishes
// to events.
func NewUserService(db *data.DB, events event.TxPublisher[any]) *UserService {
	return &UserService{db: db, events: events}
}

// CreateUser validates req, inserts the user and publishes
// user.registered, in one transaction: the event is appended to the event
// log through the outbox ([event.Bus.PublishTx]), so the user and its event
// commit together or not at all, and the subscribers, durable
// subscriptions, handle it after the commit. A field that is not valid
// fails with an [*InputError]; a taken email with an error matching
// [repository.ErrEmailTaken]. Either way nothing is stored.
func (s *UserService) CreateUser(ctx context.Context, req CreateUserRequest) (repository.User, error) {
	email, name, err := req.check()
	if err != nil {
		return repository.User{}, fmt.Errorf("create user: %w", err)
	}
	var u repository.User
	err = s.db.InTx(ctx, func(tx data.Tx) error {
		var err error
		if u, err = s.users.Create(ctx, tx, email, name); err != nil {
			return err
		}
		return s.events.PublishTx(ctx, tx.Outbox(), TopicUserRegistered,
			UserRegistered{UserID: u.ID, Email: u.Email, Name: u.Name},
			event.Aggregate(AggregateID(u.ID)))
	})
	if err != nil {
		return repository.User{}, fmt.Errorf("create user %s: %w", email, err)
	}
	return u, nil
}

// GetUser returns the user with the given ID, or an error matching
// [repository.ErrNotFound].
func (s *UserService) GetUser(ctx context.Context, id string) (repository.User, error) {
	return s.users.Get(ctx, s.db, id)
}

// check returns the request's email and name, trimmed, or an
// [*InputError].
func (r CreateUserRequest) check() (email, name string, err error) {
	email, name = strings.TrimSpace(r.Email), strings.TrimSpace(r.Name)
	switch {
	case email == "":
		return "", "", &InputError{"email", "required"}
	case len(email) > 254:
		return "", "", &InputError{"email", fmt.Sprintf("%d bytes long, at most 254", len(email))}
	}
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || a.Name != "" {
		return "", "", &InputError{"email", fmt.Sprintf("%q is not a bare address such as ada@example.com", email)}
	}
	switch n := utf8.RuneCountInString(name); {
	case !utf8.ValidString(name):
		return "", "", &InputError{"name", "not valid UTF-8"}
	case n == 0:
		return "", "", &InputError{"name", "required"}
	case n > 100:
		return "", "", &InputError{"name", fmt.Sprintf("%d characters long, at most 100", n)}
	case strings.ContainsFunc(name, unicode.IsControl):
		return "", "", &InputError{"name", "contains control characters"}
	}
	return email, name, nil
}
