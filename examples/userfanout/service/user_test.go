package service_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ncore-io/event/eventtest"
	"github.com/ncore-io/event/examples/userfanout/data"
	"github.com/ncore-io/event/examples/userfanout/data/datatest"
	"github.com/ncore-io/event/examples/userfanout/data/repository"
	"github.com/ncore-io/event/examples/userfanout/service"
)

// setupUsers returns a user service on a real SQLite database and a mock
// bus.
func setupUsers(t *testing.T) (*service.UserService, *eventtest.MockBus[any], *data.DB) {
	t.Helper()
	db := datatest.SQLite(t)
	bus := eventtest.NewMockBus[any]()
	return service.NewUserService(db, bus), bus, db
}

func countUsers(t *testing.T, db *data.DB) int {
	t.Helper()
	n, err := repository.Users{}.Count(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCreateUserPublishesInItsTransaction(t *testing.T) {
	t.Parallel()
	svc, bus, _ := setupUsers(t)
	ctx := context.Background()
	u, err := svc.CreateUser(ctx, service.CreateUserRequest{Email: " ada@example.com ", Name: " Ada Lovelace "})
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != "1" || u.Email != "ada@example.com" || u.Name != "Ada Lovelace" {
		t.Errorf("CreateUser = %+v, want user 1, trimmed", u)
	}
	ev := eventtest.RequirePublished[service.UserRegistered](t, bus, service.TopicUserRegistered)
	if want := (service.UserRegistered{UserID: "1", Email: "ada@example.com", Name: "Ada Lovelace"}); ev.Payload != want {
		t.Errorf("payload %+v, want %+v", ev.Payload, want)
	}
	if ev.AggregateID != "user-1" {
		t.Errorf("aggregate %q, want user-1", ev.AggregateID)
	}
	if tx := bus.PublishedTx(service.TopicUserRegistered); len(tx) != 1 || tx[0].ID != ev.ID {
		t.Errorf("the event was not published in the transaction (PublishTx): %v", tx)
	}
	got, err := svc.GetUser(ctx, u.ID)
	if err != nil || got != u {
		t.Errorf("GetUser = %+v, %v; want %+v", got, err, u)
	}
}

// When the event cannot be published, the user is not stored either: the
// insert rolls back with the transaction.
func TestCreateUserRollsBackWhenThePublishFails(t *testing.T) {
	t.Parallel()
	svc, bus, db := setupUsers(t)
	ctx := context.Background()
	boom := errors.New("event log unavailable")
	bus.FailNext(boom)
	_, err := svc.CreateUser(ctx, service.CreateUserRequest{Email: "ada@example.com", Name: "Ada"})
	if !errors.Is(err, boom) {
		t.Fatalf("CreateUser = %v, want the publish's error", err)
	}
	if n := countUsers(t, db); n != 0 {
		t.Errorf("%d users stored, want 0: the insert did not roll back", n)
	}
	eventtest.RequireNotPublished(t, bus, ">")
	// The email is free: nothing of the failed attempt remains.
	if _, err := svc.CreateUser(ctx, service.CreateUserRequest{Email: "ada@example.com", Name: "Ada"}); err != nil {
		t.Fatalf("CreateUser after the failure = %v", err)
	}
	eventtest.RequirePublished[service.UserRegistered](t, bus, service.TopicUserRegistered)
}

func TestCreateUserRefusesATakenEmail(t *testing.T) {
	t.Parallel()
	svc, bus, db := setupUsers(t)
	ctx := context.Background()
	if _, err := svc.CreateUser(ctx, service.CreateUserRequest{Email: "ada@example.com", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	_, err := svc.CreateUser(ctx, service.CreateUserRequest{Email: "ada@example.com", Name: "Another Ada"})
	if !errors.Is(err, repository.ErrEmailTaken) {
		t.Fatalf("CreateUser with a taken email = %v, want ErrEmailTaken", err)
	}
	eventtest.RequirePublishedN[service.UserRegistered](t, bus, service.TopicUserRegistered, 1)
	if n := countUsers(t, db); n != 1 {
		t.Errorf("%d users, want 1", n)
	}
}

func TestCreateUserRefusesBadInput(t *testing.T) {
	t.Parallel()
	svc, bus, db := setupUsers(t)
	for _, c := range []struct {
		req        service.CreateUserRequest
		field, why string
	}{
		{service.CreateUserRequest{Name: "Ada"}, "email", "required"},
		{service.CreateUserRequest{Email: "   ", Name: "Ada"}, "email", "required"},
		{service.CreateUserRequest{Email: "ada", Name: "Ada"}, "email", `"ada" is not a bare address`},
		{service.CreateUserRequest{Email: "Ada <ada@example.com>", Name: "Ada"}, "email", "is not a bare address"},
		{service.CreateUserRequest{Email: strings.Repeat("a", 250) + "@example.com", Name: "Ada"}, "email", "at most 254"},
		{service.CreateUserRequest{Email: "ada@example.com"}, "name", "required"},
		{service.CreateUserRequest{Email: "ada@example.com", Name: strings.Repeat("é", 101)}, "name", "101 characters long, at most 100"},
		{service.CreateUserRequest{Email: "ada@example.com", Name: "Ada\x00"}, "name", "control characters"},
		{service.CreateUserRequest{Email: "ada@example.com", Name: "Ada\xff"}, "name", "UTF-8"},
	} {
		_, err := svc.CreateUser(context.Background(), c.req)
		var bad *service.InputError
		if !errors.As(err, &bad) || bad.Field != c.field || !strings.Contains(bad.Reason, c.why) {
			t.Errorf("CreateUser(%+v) = %v, want an InputError on %s saying %q", c.req, err, c.field, c.why)
		}
	}
	eventtest.RequireNotPublished(t, bus, ">")
	if n := countUsers(t, db); n != 0 {
		t.Errorf("%d users stored, want 0", n)
	}
}
