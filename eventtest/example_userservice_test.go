package eventtest_test

import (
	"context"
	"fmt"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/eventtest"
)

// UserRegistered is published when a user signs up.
type UserRegistered struct {
	UserID string
	Email  string
}

// User is a registered user.
type User struct {
	ID    string
	Email string
}

// UserService depends on event.Publisher, not on *event.Bus, so that its
// tests can hand it an eventtest.MockBus.
type UserService struct {
	events event.Publisher[any]
	nextID int
}

// NewUserService returns a service that publishes to events.
func NewUserService(events event.Publisher[any]) *UserService {
	return &UserService{events: events}
}

// CreateUser registers a user and publishes user.registered.
func (s *UserService) CreateUser(ctx context.Context, email string) (User, error) {
	s.nextID++
	u := User{ID: fmt.Sprintf("u%d", s.nextID), Email: email}
	// ... store the user ...
	err := s.events.Publish(ctx, "user.registered", UserRegistered{UserID: u.ID, Email: u.Email},
		event.Aggregate(u.ID))
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", email, err)
	}
	return u, nil
}

// A service's unit test checks what it published: in a test,
// bus.PublishedCount("user.registered") is what it compares with 1.
func Example_userService() {
	ctx := context.Background()
	bus := eventtest.NewMockBus[any]()
	svc := NewUserService(bus)

	if _, err := svc.CreateUser(ctx, "ada@example.com"); err != nil {
		fmt.Println("error:", err)
		return
	}

	fmt.Println("user.registered events:", bus.PublishedCount("user.registered"))
	ev := bus.Published("user.registered")[0]
	reg := ev.Payload.(UserRegistered)
	fmt.Println("email:", reg.Email)
	fmt.Println("aggregate:", ev.AggregateID)
	// Output:
	// user.registered events: 1
	// email: ada@example.com
	// aggregate: u1
}
