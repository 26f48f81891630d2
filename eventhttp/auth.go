package eventhttp

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Class is a class of routes that share an authorizer (see
// [WithAuthorizer]).
type Class int

// The route classes.
const (
	// Publish is POST /events.
	Publish Class = iota
	// Read is GET /events, GET /events/{id}, GET /events/stats and
	// GET /events/stream.
	Read
	// Admin is the dead-letter routes under /events/deadletters.
	Admin
	numClasses
)

var allClasses = [numClasses]Class{Publish, Read, Admin}

func (c Class) valid() bool { return c >= 0 && c < numClasses }

// String returns "publish", "read" or "admin".
func (c Class) String() string {
	switch c {
	case Publish:
		return "publish"
	case Read:
		return "read"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// Errors an [Authorizer] returns, alone or wrapped.
var (
	// ErrUnauthenticated: the request carries no credentials, or ones that
	// are not valid. The handler answers 401 with a WWW-Authenticate
	// header.
	ErrUnauthenticated = errors.New("eventhttp: authentication required")
	// ErrForbidden: the credentials are valid but do not allow the route's
	// class. The handler answers 403.
	ErrForbidden = errors.New("eventhttp: forbidden")
)

var errNilAuthorizer = errors.New("eventhttp: new: WithAuthorizer: nil authorizer")

func errClass(c Class) error {
	return fmt.Errorf("eventhttp: new: WithAuthorizer: unknown class %d", int(c))
}

// An Authorizer decides whether a request may use a route of a class. It
// returns nil to allow it, an error matching [ErrUnauthenticated] (401) or
// [ErrForbidden] (403) to refuse it; any other error refuses it with 500.
// Its error's text is sent to the client. It runs before the request body
// is read, and must be safe for concurrent use.
type Authorizer interface {
	Authorize(r *http.Request, class Class) error
}

// AuthorizerFunc adapts a function to [Authorizer].
type AuthorizerFunc func(r *http.Request, class Class) error

// Authorize calls f(r, class).
func (f AuthorizerFunc) Authorize(r *http.Request, class Class) error { return f(r, class) }

// BearerToken returns an [Authorizer] that accepts requests carrying
// "Authorization: Bearer <token>" for the given classes (all if none). A
// request without that token fails with [ErrUnauthenticated]; one with the
// token, on a route of another class, with [ErrForbidden]. The token is
// compared in constant time. An empty token panics: it would make every
// request without credentials look authenticated.
//
// Combine tokens of different reach with [AnyOf]:
//
//	eventhttp.AnyOf(eventhttp.BearerToken(opsToken), eventhttp.BearerToken(appToken, eventhttp.Publish, eventhttp.Read))
func BearerToken(token string, classes ...Class) Authorizer {
	if token == "" {
		panic("eventhttp: BearerToken with an empty token")
	}
	b := &bearer{sum: sha256.Sum256([]byte(token))}
	if len(classes) == 0 {
		classes = allClasses[:]
	}
	for _, c := range classes {
		if !c.valid() {
			panic(fmt.Sprintf("eventhttp: BearerToken with unknown class %d", int(c)))
		}
		b.allow[c] = true
	}
	return b
}

type bearer struct {
	sum   [sha256.Size]byte
	allow [numClasses]bool
}

func (b *bearer) Authorize(r *http.Request, class Class) error {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return fmt.Errorf("%w: send Authorization: Bearer <token>", ErrUnauthenticated)
	}
	// Hashing first makes the comparison's time independent of the
	// token's length as well as its content.
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(sum[:], b.sum[:]) != 1 {
		return fmt.Errorf("%w: invalid token", ErrUnauthenticated)
	}
	if !class.valid() || !b.allow[class] {
		return fmt.Errorf("%w: the token does not allow %s routes", ErrForbidden, class)
	}
	return nil
}

// AnyOf returns an [Authorizer] that allows a request if any of auths
// does. Otherwise it fails with [ErrForbidden] if one of them did (the
// credentials were recognised but are not enough), else with the first
// error.
func AnyOf(auths ...Authorizer) Authorizer {
	for _, a := range auths {
		if a == nil {
			panic("eventhttp: AnyOf with a nil authorizer")
		}
	}
	return AuthorizerFunc(func(r *http.Request, class Class) error {
		var first, forbidden error
		for _, a := range auths {
			err := a.Authorize(r, class)
			switch {
			case err == nil:
				return nil
			case forbidden == nil && errors.Is(err, ErrForbidden):
				forbidden = err
			case first == nil:
				first = err
			}
		}
		if forbidden != nil {
			return forbidden
		}
		if first == nil {
			return fmt.Errorf("%w: no authorizer configured", ErrForbidden)
		}
		return first
	})
}

// authorize runs the class's authorizer, if any, and answers a refusal.
func (h *Handler) authorize(r *http.Request, class Class) error {
	a := h.cfg.auth[class]
	if a == nil {
		return nil
	}
	err := a.Authorize(r, class)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrForbidden):
		return &httpError{status: http.StatusForbidden, body: errorBody{Error: err.Error()}}
	case errors.Is(err, ErrUnauthenticated):
		return &httpError{status: http.StatusUnauthorized, body: errorBody{Error: err.Error()},
			header: [2]string{"WWW-Authenticate", "Bearer"}}
	}
	return &httpError{status: http.StatusInternalServerError, body: errorBody{Error: "eventhttp: authorization failed: " + err.Error()}}
}
