// Package repository reads and writes the service's users.
package repository

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ncore-io/event/examples/userfanout/data"
)

var (
	// ErrEmailTaken is matched by the error of a Create whose email
	// another user has.
	ErrEmailTaken = errors.New("email already registered")
	// ErrNotFound is matched by the error of a Get of an unknown user.
	ErrNotFound = errors.New("no such user")
)

// User is a registered user.
type User struct {
	ID        string    `json:"id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Users is the users table. It holds no state, so it is safe for
// concurrent use; the transactions given to it are not.
type Users struct{}

// Create inserts a user in tx, the caller's transaction, so that the user
// commits or rolls back with whatever else the caller writes there (the
// event announcing it). The ID is a number the database assigns (from 1,
// growing; on PostgreSQL with gaps where an insert failed). An email that is taken
// fails with an error matching [ErrEmailTaken], and leaves tx usable.
func (Users) Create(ctx context.Context, tx data.Tx, email, name string) (User, error) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	var id int64
	// ON CONFLICT rather than a look-up first: on PostgreSQL another
	// transaction could insert the email in between.
	err := tx.QueryRow(ctx, `INSERT INTO users (email, name, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (email) DO NOTHING RETURNING id`, email, name, now.Format(time.RFC3339Nano)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("repository: create user: %s: %w", email, ErrEmailTaken)
	}
	if err != nil {
		return User{}, fmt.Errorf("repository: create user %s: %w", email, err)
	}
	return User{ID: strconv.FormatInt(id, 10), Email: email, Name: name, CreatedAt: now}, nil
}

// Get returns the user with the given ID, or an error matching
// [ErrNotFound].
func (Users) Get(ctx context.Context, q data.Querier, id string) (User, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != id { // "01" is not user 1
		return User{}, fmt.Errorf("repository: get user %q: %w", id, ErrNotFound)
	}
	u := User{ID: id}
	var created string
	err = q.QueryRow(ctx, `SELECT email, name, created_at FROM users WHERE id = $1`, n).Scan(&u.Email, &u.Name, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("repository: get user %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("repository: get user %s: %w", id, err)
	}
	if u.CreatedAt, err = time.Parse(time.RFC3339Nano, created); err != nil {
		return User{}, fmt.Errorf("repository: get user %s: created_at: %w", id, err)
	}
	return u, nil
}

// Count returns how many users there are.
func (Users) Count(ctx context.Context, q data.Querier) (int, error) {
	var n int
	if err := q.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("repository: count users: %w", err)
	}
	return n, nil
}
