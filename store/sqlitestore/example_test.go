package sqlitestore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/ncore-io/event/store"
	"github.com/ncore-io/event/store/sqlitestore"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "events")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := sqlitestore.Open(ctx, filepath.Join(dir, "events.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	recs := []store.Record{{
		ID: "evt-1", Topic: "user.registered", AggregateID: "user-42",
		Time: time.Now(), ContentType: "application/json", Payload: []byte(`{"email":"ann@example.com"}`),
	}}
	// Expect version 0: the user must not exist yet.
	if err := s.Append(ctx, recs, store.Expect{AggregateID: "user-42", Version: 0}); err != nil {
		log.Fatal(err)
	}
	for r, err := range store.All(ctx, s, store.Query{Topic: "user.>"}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(r.Position, r.Topic, r.AggregateID, r.Version, string(r.Payload))
	}
	// Output:
	// 1 user.registered user-42 1 {"email":"ann@example.com"}
}

func ExampleStore_AppendTx() {
	dir, err := os.MkdirTemp("", "events")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	s, err := sqlitestore.Open(ctx, filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	// The application's table lives in the same file.
	db := s.DB()
	if _, err := db.ExecContext(ctx, `CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT)`); err != nil {
		log.Fatal(err)
	}

	// The user row and its event commit together, or not at all.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO users VALUES ('user-42', 'ann@example.com')`); err != nil {
		log.Fatal(err)
	}
	ev := []store.Record{{ID: "evt-1", Topic: "user.registered", AggregateID: "user-42", Time: time.Now(), Payload: []byte(`{}`)}}
	if err := s.AppendTx(ctx, tx, ev); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	r, err := s.Load(ctx, "evt-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.Topic, r.AggregateID, r.Version)
	// Output:
	// user.registered user-42 1
}
