package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

// The user events. Every event's aggregate ID is its user's ID, and its
// version is the user's version after it.
const (
	topicUserCreated = "user.created"
	topicUserRenamed = "user.renamed"
	userTopics       = "user.>"
)

// UserCreated is published when a user is created.
type UserCreated struct {
	UserID string `json:"user_id"`
	Name   string `json:"name"`
	Email  string `json:"email"`
}

// UserRenamed is published when a user's name changes.
type UserRenamed struct {
	UserID string `json:"user_id"`
	Name   string `json:"name"`
}

// ErrEmailTaken is matched by the error of a CreateUser whose email another
// user has.
var ErrEmailTaken = errors.New("email already registered")

// writeSchema is the write model. It lives in the event log's file, since
// the outbox appends events in a transaction of the store's connection.
const writeSchema = `
CREATE TABLE IF NOT EXISTS users (
	id      TEXT PRIMARY KEY,
	name    TEXT NOT NULL,
	email   TEXT NOT NULL UNIQUE,
	version INTEGER NOT NULL -- of the user's last event
);
`

// User is a user as the write model holds it.
type User struct {
	ID, Name, Email string
	Version         int64 // of the user's last event
}

// Service is the user service: commands change the write model and publish
// events; a projection of the events keeps the read model that queries
// use. It is safe for concurrent use.
type Service struct {
	bus  *event.Bus[any]
	db   *sql.DB // the store's writer: see sqlitestore.Store.DB
	read *ReadModel
}

// Open creates the write model in events if needed, opens the read model at
// readPath and starts the projection that keeps it. A read model that is
// new (or was deleted) is first built from the whole log. Close the Service
// before events.
func Open(ctx context.Context, events *sqlitestore.Store, readPath string) (*Service, error) {
	if _, err := events.DB().ExecContext(ctx, writeSchema); err != nil {
		return nil, fmt.Errorf("cqrs: create the write model: %w", err)
	}
	bus, err := event.New[any](event.WithStore(events), event.WithTypes(UserCreated{}, UserRenamed{}),
		event.WithRetry(event.RetryPolicy{MaxRetries: 5, InitialInterval: 20 * time.Millisecond}))
	if err != nil {
		return nil, fmt.Errorf("cqrs: %w", err)
	}
	read, err := OpenReadModel(ctx, readPath)
	if err != nil {
		bus.Close(ctx)
		return nil, err
	}
	s := &Service{bus: bus, db: events.DB(), read: read}
	if err := s.start(ctx); err != nil {
		s.Close(ctx)
		return nil, err
	}
	return s, nil
}

func (s *Service) start(ctx context.Context) error {
	pos, err := s.read.Position(ctx)
	if err != nil {
		return err
	}
	if pos == 0 {
		if _, err := s.read.Rebuild(ctx, s.bus); err != nil {
			return err
		}
	}
	// The projection: a durable subscription, so it also applies what was
	// published while it was not running.
	_, err = event.Subscribe(s.bus, userTopics, s.read.Project, event.Durable("user-search"))
	if err != nil {
		return fmt.Errorf("cqrs: start the projection: %w", err)
	}
	return nil
}

// Close stops the projection after the event in hand and closes the read
// model.
func (s *Service) Close(ctx context.Context) error {
	return errors.Join(s.bus.Close(ctx), s.read.Close())
}

// CreateUser creates a user and publishes user.created in the same
// transaction. The read model shows the user once the projection has
// applied the event: see [Service.WaitFor].
func (s *Service) CreateUser(ctx context.Context, name, email string) (User, error) {
	name = strings.TrimSpace(name)
	if err := checkName(name); err != nil {
		return User{}, fmt.Errorf("cqrs: create user: %w", err)
	}
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email || addr.Name != "" {
		return User{}, fmt.Errorf("cqrs: create user: %q is not a bare email address such as ada@example.com", email)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("cqrs: create user: %w", err)
	}
	defer tx.Rollback()
	// The transaction holds SQLite's write lock from BEGIN: nothing changes
	// between these reads and the insert.
	var owner string
	switch err := tx.QueryRowContext(ctx, `SELECT id FROM users WHERE email = ?`, email).Scan(&owner); {
	case err == nil:
		return User{}, fmt.Errorf("cqrs: create user: %s is registered to %s: %w", email, owner, ErrEmailTaken)
	case !errors.Is(err, sql.ErrNoRows):
		return User{}, fmt.Errorf("cqrs: create user: %w", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return User{}, fmt.Errorf("cqrs: create user: %w", err)
	}
	u := User{ID: fmt.Sprintf("user-%d", n+1), Name: name, Email: email, Version: 1}
	if _, err := tx.ExecContext(ctx, `INSERT INTO users (id, name, email, version) VALUES (?, ?, ?, ?)`, u.ID, u.Name, u.Email, u.Version); err != nil {
		return User{}, fmt.Errorf("cqrs: create user: %w", err)
	}
	if err := s.publish(ctx, tx, u.ID, topicUserCreated, UserCreated{UserID: u.ID, Name: u.Name, Email: u.Email}, 0); err != nil {
		return User{}, fmt.Errorf("cqrs: create user: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return User{}, fmt.Errorf("cqrs: create user: %w", err)
	}
	return u, nil
}

// RenameUser changes a user's name and publishes user.renamed in the same
// transaction. Renaming to the current name changes nothing and publishes
// nothing. An unknown ID returns an error matching [store.ErrNotFound].
func (s *Service) RenameUser(ctx context.Context, id, name string) (User, error) {
	name = strings.TrimSpace(name)
	if err := checkName(name); err != nil {
		return User{}, fmt.Errorf("cqrs: rename user %s: %w", id, err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return User{}, fmt.Errorf("cqrs: rename user %s: %w", id, err)
	}
	defer tx.Rollback()
	u := User{ID: id}
	err = tx.QueryRowContext(ctx, `SELECT name, email, version FROM users WHERE id = ?`, id).Scan(&u.Name, &u.Email, &u.Version)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("cqrs: rename user %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("cqrs: rename user %s: %w", id, err)
	}
	if u.Name == name {
		return u, nil
	}
	// The event is published at the version the user was read at: the log
	// refuses it if the write model and the log ever disagree.
	if err := s.publish(ctx, tx, id, topicUserRenamed, UserRenamed{UserID: id, Name: name}, u.Version); err != nil {
		return User{}, fmt.Errorf("cqrs: rename user %s: %w", id, err)
	}
	u.Name, u.Version = name, u.Version+1
	if _, err := tx.ExecContext(ctx, `UPDATE users SET name = ?, version = ? WHERE id = ?`, u.Name, u.Version, id); err != nil {
		return User{}, fmt.Errorf("cqrs: rename user %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return User{}, fmt.Errorf("cqrs: rename user %s: %w", id, err)
	}
	return u, nil
}

// publish appends a user's event in tx, the outbox, expecting the user to
// be at version before it.
func (s *Service) publish(ctx context.Context, tx *sql.Tx, userID, topic string, payload any, version int64) error {
	return s.bus.PublishTx(ctx, tx, topic, payload, event.Aggregate(userID), event.ExpectVersion(version))
}

func checkName(name string) error {
	switch n := utf8.RuneCountInString(name); {
	case n == 0:
		return errors.New("empty name")
	case n > 100:
		return fmt.Errorf("name has %d characters, more than 100", n)
	}
	return nil
}

// Search returns the users whose name or email has words that start with
// each word of query, best matches first.
func (s *Service) Search(ctx context.Context, query string) ([]UserView, error) {
	return s.read.Search(ctx, query)
}

// WaitFor waits until the read model shows the user at version or later,
// so that a caller can read its own writes.
func (s *Service) WaitFor(ctx context.Context, userID string, version int64) error {
	return s.read.WaitFor(ctx, userID, version)
}

// Rebuild drops the read model and builds it again from the log, and
// returns how many events it replayed.
func (s *Service) Rebuild(ctx context.Context) (int, error) { return s.read.Rebuild(ctx, s.bus) }

// Dump returns the read model's content, serialised deterministically.
func (s *Service) Dump(ctx context.Context) ([]byte, error) { return s.read.Dump(ctx) }
