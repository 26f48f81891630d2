package eventhttp

import (
	"reflect"
	"time"
)

// Defaults of a handler created with no options.
const (
	// DefaultMaxBodySize is the largest request body, in bytes, that
	// POST /events reads.
	DefaultMaxBodySize = 1 << 20
	// DefaultKeepAlive is how often an idle event stream sends a comment,
	// so that proxies and clients do not take it for dead.
	DefaultKeepAlive = 15 * time.Second
	// DefaultPollInterval is how often an event stream looks for new events
	// when the store cannot signal appends.
	DefaultPollInterval = time.Second
)

// An Option configures a handler in [New].
type Option func(*config)

type config struct {
	types        []typeReg
	raw          bool
	maxBody      int64
	keepAlive    time.Duration
	pollInterval time.Duration
	auth         [numClasses]Authorizer
	authErr      error // a WithAuthorizer mistake, reported by New
}

// typeReg is one [Type] option: the Go type that data posted to topics
// matching pattern decodes into.
type typeReg struct {
	pattern string
	typ     reflect.Type
}

func defaultConfig() config {
	return config{maxBody: DefaultMaxBodySize, keepAlive: DefaultKeepAlive, pollInterval: DefaultPollInterval}
}

// Type registers E as the Go type that the data of events posted to topics
// matching pattern decodes into: Type[UserRegistered]("user.registered").
// The payload published on the bus is then an E, so it reaches handlers
// subscribed with event.Subscribe[UserRegistered]. [New] checks that the
// bus can carry an E.
//
// A topic matching several registrations takes the one whose pattern is
// the topic itself, else the first pattern registered. On a bus of a
// concrete type T, topics without a registration decode into T; on a bus
// of an interface type they are refused, unless [RawJSON] is given.
//
// On a bus of an interface type, durable subscriptions and replays decode
// stored events through the bus's own type registry: register E there too
// (event.WithTypes, or a typed subscription).
func Type[E any](pattern string) Option {
	t := reflect.TypeFor[E]()
	return func(c *config) { c.types = append(c.types, typeReg{pattern: pattern, typ: t}) }
}

// RawJSON publishes the data of events whose topic has no [Type] as a
// json.RawMessage, as posted, instead of refusing them. It needs a bus of an
// interface type that json.RawMessage implements, such as any. Default: such
// events are refused with 400 naming the topic.
func RawJSON() Option { return func(c *config) { c.raw = true } }

// MaxBodySize sets the largest request body, in bytes, that POST /events
// reads; a larger one is refused with 413 and nothing is published. Default
// [DefaultMaxBodySize].
func MaxBodySize(n int64) Option { return func(c *config) { c.maxBody = n } }

// KeepAlive sets how often an idle event stream sends a comment line.
// Default [DefaultKeepAlive].
func KeepAlive(d time.Duration) Option { return func(c *config) { c.keepAlive = d } }

// PollInterval sets how often an event stream reads the store for new
// events when the store cannot signal appends itself (store.Notifier).
// Default [DefaultPollInterval].
func PollInterval(d time.Duration) Option { return func(c *config) { c.pollInterval = d } }

// WithAuthorizer guards the routes of the given classes with a: every
// request to them must pass a.Authorize first. With no classes, a guards
// all of them. A later WithAuthorizer for a class replaces an earlier one.
//
// A class without an authorizer is open to anyone who can reach the
// handler. In particular, POST /events publishes for anyone unless
// [Publish] has an authorizer.
func WithAuthorizer(a Authorizer, classes ...Class) Option {
	return func(c *config) {
		if a == nil {
			c.authErr = errNilAuthorizer
			return
		}
		if len(classes) == 0 {
			classes = allClasses[:]
		}
		for _, cl := range classes {
			if !cl.valid() {
				c.authErr = errClass(cl)
				return
			}
			c.auth[cl] = a
		}
	}
}
