package event

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// RetryPolicy says how often and how soon a failed handler is tried again.
// The zero value means no retries.
//
// The wait before retry n (from 1) is InitialInterval × Multiplier^(n-1),
// capped at MaxInterval, then spread by ±Jitter of itself at random, so that
// handlers failing together do not retry together.
type RetryPolicy struct {
	// MaxRetries is how many times a failed delivery is retried: a handler
	// is called at most 1+MaxRetries times per event.
	MaxRetries int
	// InitialInterval is the wait before the first retry. Default 100ms.
	InitialInterval time.Duration
	// MaxInterval caps the wait. Default 10s.
	MaxInterval time.Duration
	// Multiplier grows the wait after each retry. Default 2.
	Multiplier float64
	// Jitter, from 0 to 1, is the fraction of the wait that is randomised.
	// Default 0.2; a negative value disables jitter.
	Jitter float64
}

func (p RetryPolicy) validate() error {
	switch {
	case p.MaxRetries < 0:
		return fmt.Errorf("retry: MaxRetries must be zero or more, got %d", p.MaxRetries)
	case p.InitialInterval < 0 || p.MaxInterval < 0:
		return fmt.Errorf("retry: intervals must not be negative, got %v and %v", p.InitialInterval, p.MaxInterval)
	case p.Multiplier != 0 && !(p.Multiplier >= 1): // NaN too: it would make every wait NaN
		return fmt.Errorf("retry: Multiplier must be 1 or more, got %v", p.Multiplier)
	case !(p.Jitter <= 1):
		return fmt.Errorf("retry: Jitter must be at most 1, got %v", p.Jitter)
	}
	return nil
}

// backoff returns the wait before retry n, from 1.
func (p RetryPolicy) backoff(n int) time.Duration {
	d, maxd, mul, jit := p.InitialInterval, p.MaxInterval, p.Multiplier, p.Jitter
	if d == 0 {
		d = 100 * time.Millisecond
	}
	if maxd == 0 {
		maxd = 10 * time.Second
	}
	if mul == 0 {
		mul = 2
	}
	if jit == 0 {
		jit = 0.2
	}
	w := float64(d)
	for i := 1; i < n && w < float64(maxd); i++ {
		w *= mul
	}
	w = min(w, float64(maxd))
	if jit > 0 {
		w += w * jit * (2*rand.Float64() - 1)
	}
	return time.Duration(w)
}

// storeRetry is how a durable subscription waits between attempts at a
// store that fails: from 10ms, doubling, up to 5s.
var storeRetry = RetryPolicy{InitialInterval: 10 * time.Millisecond, MaxInterval: 5 * time.Second}

// retries counts the consecutive failures of one operation, for
// [RetryPolicy.backoff].
type retries struct {
	p RetryPolicy
	n int
}

// next returns the wait before the next attempt.
func (r *retries) next() time.Duration {
	r.n++
	return r.p.backoff(r.n)
}

// reset starts over after a success.
func (r *retries) reset() { r.n = 0 }
