package repository_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ncore-io/event/examples/userfanout/data"
	"github.com/ncore-io/event/examples/userfanout/data/datatest"
	"github.com/ncore-io/event/examples/userfanout/data/repository"
)

func TestUsers(t *testing.T) {
	t.Parallel()
	for _, driver := range datatest.Drivers {
		t.Run(driver, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := datatest.Open(t, datatest.Options(t, driver))
			var users repository.Users
			before := time.Now().UTC().Add(-time.Second)
			var ada, grace repository.User
			err := db.InTx(ctx, func(tx data.Tx) error {
				var err error
				if ada, err = users.Create(ctx, tx, "ada@example.com", "Ada Lovelace"); err != nil {
					return err
				}
				// A taken email fails, and leaves the transaction usable.
				if _, err := users.Create(ctx, tx, "ada@example.com", "Ada again"); !errors.Is(err, repository.ErrEmailTaken) {
					t.Errorf("Create with a taken email = %v, want ErrEmailTaken", err)
				}
				grace, err = users.Create(ctx, tx, "grace@example.com", "Grace Hopper")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			// PostgreSQL's identity skips the number the conflict took.
			if a, g := atoi(t, ada.ID), atoi(t, grace.ID); a != 1 || g <= a {
				t.Errorf("IDs %q and %q, want 1 and a larger one", ada.ID, grace.ID)
			}
			if ada.CreatedAt.Before(before) || ada.CreatedAt.After(time.Now()) {
				t.Errorf("CreatedAt %v is not now", ada.CreatedAt)
			}
			got, err := users.Get(ctx, db, ada.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got != ada {
				t.Errorf("Get = %+v, want %+v", got, ada)
			}
			if n, err := users.Count(ctx, db); err != nil || n != 2 {
				t.Errorf("Count = %d, %v; want 2", n, err)
			}
			for _, id := range []string{"999", "01", "+1", "0", "-1", "abc", ""} {
				if _, err := users.Get(ctx, db, id); !errors.Is(err, repository.ErrNotFound) {
					t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
				}
			}
			// A rolled-back Create leaves nothing behind.
			db.InTx(ctx, func(tx data.Tx) error {
				if _, err := users.Create(ctx, tx, "linus@example.com", "Linus"); err != nil {
					t.Fatal(err)
				}
				return errors.New("roll back")
			})
			if n, err := users.Count(ctx, db); err != nil || n != 2 {
				t.Errorf("Count after a rollback = %d, %v; want 2", n, err)
			}
		})
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("ID %q is not a number", s)
	}
	return n
}
