package event

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
)

// A Codec encodes payloads for a store and decodes them back. It must be
// safe for concurrent use.
type Codec interface {
	// ContentType names the encoding, such as "application/json". It is
	// stored with each event.
	ContentType() string
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, a non-nil pointer.
	Unmarshal(data []byte, v any) error
}

// JSON is the default [Codec]: encoding/json.
type JSON struct{}

// ContentType returns "application/json".
func (JSON) ContentType() string { return "application/json" }

// Marshal encodes v with [json.Marshal].
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data with [json.Unmarshal].
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// A Typer names its own event type in the store. Without it a payload's
// type is named after its Go package path and type name, so moving or
// renaming the type would orphan the events already stored; implement
// EventType to keep the name stable.
type Typer interface {
	EventType() string
}

var typerType = reflect.TypeFor[Typer]()

// typeName returns the stored name of a payload type.
func typeName(t reflect.Type) string {
	if t.Implements(typerType) {
		v := reflect.New(t).Elem()
		if t.Kind() == reflect.Pointer {
			v = reflect.New(t.Elem())
		}
		if n := v.Interface().(Typer).EventType(); n != "" {
			return n
		}
	}
	ptr := ""
	for t.Kind() == reflect.Pointer {
		ptr += "*"
		t = t.Elem()
	}
	if t.Name() == "" || t.PkgPath() == "" {
		return ptr + t.String()
	}
	return ptr + t.PkgPath() + "." + t.Name()
}

// registry maps stored type names to Go types, so that a bus of an
// interface type can decode each stored payload into its own type.
type registry struct {
	mu     sync.RWMutex
	byName map[string]reflect.Type
	names  sync.Map // reflect.Type -> string, a cache of typeName
	known  sync.Map // reflect.Type -> string, the types added
}

func (r *registry) name(t reflect.Type) string {
	if n, ok := r.names.Load(t); ok {
		return n.(string)
	}
	n := typeName(t)
	r.names.Store(t, n)
	return n
}

// learn registers t unless it is known already, and returns its name. It
// is add with a lock-free fast path, for every publish.
func (r *registry) learn(t reflect.Type) (string, error) {
	if n, ok := r.known.Load(t); ok {
		return n.(string), nil
	}
	if err := r.add(t); err != nil {
		return "", err
	}
	return r.name(t), nil
}

// add registers t, failing if another type already has its name.
func (r *registry) add(t reflect.Type) error {
	if t.Kind() == reflect.Interface {
		return nil // a handler for an interface decodes nothing of its own
	}
	n := r.name(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byName == nil {
		r.byName = make(map[string]reflect.Type)
	}
	if old, ok := r.byName[n]; ok && old != t {
		// A Typer names X and *X alike; by the pointer rule they are one
		// event type, kept as the value type.
		switch {
		case t.Kind() == reflect.Pointer && t.Elem() == old:
			r.known.Store(t, n)
			return nil
		case old.Kind() == reflect.Pointer && old.Elem() == t:
			r.byName[n] = t
			r.known.Store(t, n)
			return nil
		}
		return fmt.Errorf("event type name %q is used by both %v and %v", n, old, t)
	}
	r.byName[n] = t
	r.known.Store(t, n)
	return nil
}

// lookup returns the type stored under name. A pointer type whose element
// type is known (or the reverse) is found too, by the rule of [Subscribe]
// that a handler of X takes a *X and one of *X takes an X.
func (r *registry) lookup(name string) (reflect.Type, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if t, ok := r.byName[name]; ok {
		return t, true
	}
	if elem, ok := strings.CutPrefix(name, "*"); ok {
		if t, ok := r.byName[elem]; ok && t.Kind() != reflect.Pointer {
			return reflect.PointerTo(t), true
		}
	} else if t, ok := r.byName["*"+name]; ok && t.Kind() == reflect.Pointer {
		return t.Elem(), true
	}
	return nil, false
}
