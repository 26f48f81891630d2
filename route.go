package event

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ncore-io/event/store"
)

// maxCachedTopics bounds the route cache, so that topics carrying IDs (such
// as "user.123.updated") cannot grow it without limit. Past it, routes are
// computed on every publish.
const maxCachedTopics = 4096

// routes is an immutable snapshot of the subscriptions, with a cache of which
// of them match each topic published so far. Subscribe and Unsubscribe
// replace the snapshot, so Publish reads it without a lock.
type routes[T any] struct {
	subs   []*subscription[T]
	last   atomic.Pointer[route[T]] // the last route looked up: a bus often publishes one topic in a row
	cache  sync.Map                 // topic -> *route[T]
	cached atomic.Int32
}

// route is the subscriptions matching one topic.
type route[T any] struct {
	topic   string
	async   []*subscription[T]
	sync    []*subscription[T]
	durable []*subscription[T] // matched, but fed from the store
}

// lookup returns the route of a topic, validating the topic the first time
// it is seen.
func (rs *routes[T]) lookup(topic string) (*route[T], error) {
	if rt := rs.last.Load(); rt != nil && rt.topic == topic {
		return rt, nil
	}
	if v, ok := rs.cache.Load(topic); ok {
		rt := v.(*route[T])
		rs.last.Store(rt)
		return rt, nil
	}
	if err := store.ValidateTopic(topic); err != nil {
		return nil, err
	}
	rt := &route[T]{topic: topic}
	for _, s := range rs.subs {
		if store.MatchTopic(s.pattern, topic) {
			if s.durable != nil {
				rt.durable = append(rt.durable, s)
			} else if s.sync {
				rt.sync = append(rt.sync, s)
			} else {
				rt.async = append(rt.async, s)
			}
		}
	}
	if rs.cached.Load() < maxCachedTopics {
		if _, loaded := rs.cache.LoadOrStore(topic, rt); !loaded {
			rs.cached.Add(1)
		}
	}
	return rt, nil
}

func (b *Bus[T]) addSub(s *subscription[T]) {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	b.addSubLocked(s)
}

func (b *Bus[T]) addSubLocked(s *subscription[T]) {
	old := b.routes.Load()
	b.routes.Store(&routes[T]{subs: append(slices.Clip(old.subs), s)})
}

func (b *Bus[T]) removeSub(s *subscription[T]) {
	s.removed.Store(true)
	s.cancel()
	b.subMu.Lock()
	defer b.subMu.Unlock()
	old := b.routes.Load()
	i := slices.Index(old.subs, s)
	if i < 0 {
		return
	}
	b.routes.Store(&routes[T]{subs: slices.Delete(slices.Clone(old.subs), i, i+1)})
}

// takes reports whether any of subs takes payload p.
func takes[T any](subs []*subscription[T], p T) bool {
	for _, s := range subs {
		if s.accepts == nil || s.accepts(p) {
			return true
		}
	}
	return false
}
