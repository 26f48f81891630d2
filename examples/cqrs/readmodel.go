package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	_ "modernc.org/sqlite" // the "sqlite" driver, pure Go, with FTS5

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/store"
)

// readSchema is the read model, in a database file of its own: a table of
// users as queries show them, an FTS5 full-text index of their names and
// emails (rowid = user_view.id), and the position of the last event
// applied.
const readSchema = `
CREATE TABLE IF NOT EXISTS user_view (
	id      INTEGER PRIMARY KEY,
	user_id TEXT NOT NULL UNIQUE,
	name    TEXT NOT NULL,
	email   TEXT NOT NULL,
	version INTEGER NOT NULL, -- of the user's last event applied
	joined  TEXT NOT NULL     -- the time of its user.created event
);
CREATE VIRTUAL TABLE IF NOT EXISTS user_search USING fts5(name, email, tokenize = 'unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS projection (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	position INTEGER NOT NULL
);
INSERT INTO projection (id, position) VALUES (1, 0) ON CONFLICT DO NOTHING;
`

// readTables are the read model's tables, as Dump writes them.
var readTables = []struct{ name, query string }{
	{"user_view", `SELECT id, user_id, name, email, version, joined FROM user_view ORDER BY id`},
	{"user_search", `SELECT rowid, name, email FROM user_search ORDER BY rowid`},
	{"projection", `SELECT position FROM projection`},
}

// UserView is a user as the read model shows it.
type UserView struct {
	UserID, Name, Email string
	Version             int64
	Joined              time.Time
}

// ReadModel is the searchable read model of the users. It is safe for
// concurrent use.
type ReadModel struct {
	db *sql.DB

	// mu serialises the writers, the projection and Rebuild, and guards
	// changed. SQLite would serialise them too, but a projection waiting
	// for a long rebuild's lock would fail at the busy timeout.
	mu      sync.Mutex
	changed chan struct{} // closed and replaced when the read model changes
}

// OpenReadModel opens the read model's database at path, creating it if
// needed.
func OpenReadModel(ctx context.Context, path string) (*ReadModel, error) {
	db, err := sql.Open("sqlite", path+"?"+url.Values{
		"_pragma": {"busy_timeout(5000)", "journal_mode(WAL)"},
		// Writers take the lock at BEGIN, rather than fail to upgrade a
		// read that a commit overtook.
		"_txlock": {"immediate"},
	}.Encode())
	if err != nil {
		return nil, fmt.Errorf("cqrs: open the read model: %w", err)
	}
	if _, err := db.ExecContext(ctx, readSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("cqrs: open the read model %s: %w", path, err)
	}
	return &ReadModel{db: db, changed: make(chan struct{})}, nil
}

// Close closes the read model's database.
func (r *ReadModel) Close() error { return r.db.Close() }

// Position returns the log position of the last event applied, or 0.
func (r *ReadModel) Position(ctx context.Context) (int64, error) {
	var pos int64
	if err := r.db.QueryRowContext(ctx, `SELECT position FROM projection`).Scan(&pos); err != nil {
		return 0, fmt.Errorf("cqrs: read model position: %w", err)
	}
	return pos, nil
}

// Project is the projection's handler: it applies one event, unless the
// read model has it already. Delivery is at least once, and a rebuild may
// have applied events that the subscription has not reached yet; positions
// grow along the log, so an event at or below the read model's position is
// one it has.
func (r *ReadModel) Project(ctx context.Context, ev event.Event[any]) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var pos int64
	if err := tx.QueryRowContext(ctx, `SELECT position FROM projection`).Scan(&pos); err != nil {
		return err
	}
	if ev.Position <= pos {
		return nil
	}
	if err := apply(ctx, tx, ev); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	r.notify()
	return nil
}

// Rebuild drops the read model's tables and builds them again from every
// user event in the log, in one transaction: queries see the old read model
// until the new one is complete. It returns how many events it replayed.
func (r *ReadModel) Rebuild(ctx context.Context, bus *event.Bus[any]) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("cqrs: rebuild: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DROP TABLE IF EXISTS user_view; DROP TABLE IF EXISTS user_search; DROP TABLE IF EXISTS projection;`+readSchema); err != nil {
		return 0, fmt.Errorf("cqrs: rebuild: %w", err)
	}
	n, err := event.Replay(ctx, bus, store.Query{Topic: userTopics}, func(ctx context.Context, ev event.Event[any]) error {
		return apply(ctx, tx, ev)
	})
	if err != nil {
		return n, fmt.Errorf("cqrs: rebuild: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return n, fmt.Errorf("cqrs: rebuild: %w", err)
	}
	r.notify()
	return n, nil
}

// apply writes one event into the read model. It uses only the event, never
// the clock or the write model, so that replaying the log builds the same
// read model again.
func apply(ctx context.Context, tx *sql.Tx, ev event.Event[any]) error {
	switch p := ev.Payload.(type) {
	case UserCreated:
		res, err := tx.ExecContext(ctx, `INSERT INTO user_view (user_id, name, email, version, joined) VALUES (?, ?, ?, ?, ?)`,
			p.UserID, p.Name, p.Email, ev.Version, ev.Time.UTC().Format(time.RFC3339Nano))
		if err != nil {
			return fmt.Errorf("apply %s of %s: %w", ev.Topic, p.UserID, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO user_search (rowid, name, email) VALUES (?, ?, ?)`, id, p.Name, p.Email); err != nil {
			return fmt.Errorf("apply %s of %s: %w", ev.Topic, p.UserID, err)
		}
	case UserRenamed:
		var id int64
		err := tx.QueryRowContext(ctx, `UPDATE user_view SET name = ?, version = ? WHERE user_id = ? RETURNING id`, p.Name, ev.Version, p.UserID).Scan(&id)
		if err != nil {
			return fmt.Errorf("apply %s of %s: %w", ev.Topic, p.UserID, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE user_search SET name = ? WHERE rowid = ?`, p.Name, id); err != nil {
			return fmt.Errorf("apply %s of %s: %w", ev.Topic, p.UserID, err)
		}
	default:
		// An event this version of the read model does not show: pass it,
		// as a rebuild would.
	}
	_, err := tx.ExecContext(ctx, `UPDATE projection SET position = ?`, ev.Position)
	return err
}

func (r *ReadModel) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// WaitFor waits until the read model shows the user at version or later,
// or ctx is done.
func (r *ReadModel) WaitFor(ctx context.Context, userID string, version int64) error {
	for {
		// Take the channel before looking, so that a change after the look
		// closes the channel this call waits on.
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		var v int64
		err := r.db.QueryRowContext(ctx, `SELECT version FROM user_view WHERE user_id = ?`, userID).Scan(&v)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("cqrs: wait for %s: %w", userID, err)
		}
		if v >= version {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("cqrs: wait for %s at version %d (read model has %d): %w", userID, version, v, ctx.Err())
		}
	}
}

// Search returns the users whose name or email has words that start with
// each word of query, best matches first; a match in the name counts ten
// times one in the email. Words are runs of letters and
// digits; the rest of query is ignored, so it cannot inject FTS5 syntax.
func (r *ReadModel) Search(ctx context.Context, query string) ([]UserView, error) {
	words := strings.FieldsFunc(query, func(c rune) bool { return !unicode.IsLetter(c) && !unicode.IsDigit(c) })
	if len(words) == 0 {
		return nil, fmt.Errorf("cqrs: search %q: no words to search for", query)
	}
	terms := make([]string, len(words))
	for i, w := range words {
		terms[i] = `"` + w + `"*` // a prefix query of one word
	}
	rows, err := r.db.QueryContext(ctx, `
		SELECT v.user_id, v.name, v.email, v.version, v.joined
		FROM user_search s JOIN user_view v ON v.id = s.rowid
		WHERE user_search MATCH ? ORDER BY bm25(user_search, 10, 1), v.id`, strings.Join(terms, " AND "))
	if err != nil {
		return nil, fmt.Errorf("cqrs: search %q: %w", query, err)
	}
	defer rows.Close()
	var users []UserView
	for rows.Next() {
		var u UserView
		var joined string
		if err := rows.Scan(&u.UserID, &u.Name, &u.Email, &u.Version, &joined); err != nil {
			return nil, fmt.Errorf("cqrs: search %q: %w", query, err)
		}
		if u.Joined, err = time.Parse(time.RFC3339Nano, joined); err != nil {
			return nil, fmt.Errorf("cqrs: search %q: %w", query, err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cqrs: search %q: %w", query, err)
	}
	return users, nil
}

// Dump returns the content of the read model's tables, each row as a JSON
// array on a line of its own, in a fixed order: two read models with the
// same content have the same dump. It reads one snapshot.
func (r *ReadModel) Dump(ctx context.Context) ([]byte, error) {
	// A transaction, so that every table is read at the same moment.
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("cqrs: dump: %w", err)
	}
	defer tx.Rollback()
	var buf bytes.Buffer
	for _, t := range readTables {
		fmt.Fprintf(&buf, "-- %s\n", t.name)
		if err := dumpRows(ctx, tx, t.query, &buf); err != nil {
			return nil, fmt.Errorf("cqrs: dump %s: %w", t.name, err)
		}
	}
	return buf.Bytes(), nil
}

func dumpRows(ctx context.Context, tx *sql.Tx, query string, buf *bytes.Buffer) error {
	rows, err := tx.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		line, err := json.Marshal(vals)
		if err != nil {
			return err
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	return rows.Err()
}
