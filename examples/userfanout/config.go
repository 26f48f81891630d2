package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/ncore-io/event"
	"github.com/ncore-io/event/examples/userfanout/data"
	"github.com/ncore-io/event/store"
)

// Config is the program's configuration: the keys of config.yaml. The
// event.* keys are those of the original design.
type Config struct {
	Event struct {
		Bus struct {
			BufferSize int // event.bus.buffer_size: event.WithBufferSize
			Workers    int // event.bus.workers: event.WithWorkers
		}
		Store struct {
			Enabled       bool   // event.store.enabled: must be true
			Driver        string // event.store.driver: sqlite or postgres
			Path          string // event.store.path: the SQLite file
			DSN           string // event.store.dsn: the PostgreSQL connection string
			RetentionDays int    // event.store.retention_days: event.WithRetention; 0 keeps events for ever
		}
		Handlers struct {
			Async      bool          // event.handlers.async: false is event.WithSync
			Timeout    time.Duration // event.handlers.timeout: event.WithTimeout; 0 is none
			RetryCount int           // event.handlers.retry_count: event.WithRetry's MaxRetries
		}
	}
	HTTP struct {
		Addr         string // http.addr: where to listen
		PublishToken string // http.publish_token: bearer token for POST /events and dead letters; empty is none
	}
	Analytics struct {
		FailEvery int // analytics.fail_every: the tracker fails every nth sign-up; 0 never
	}
}

// Defaults returns the configuration used when there is no config file;
// config.yaml holds the same values.
func Defaults() Config {
	var c Config
	c.Event.Bus.BufferSize = event.DefaultBufferSize
	c.Event.Bus.Workers = event.DefaultWorkers
	c.Event.Store.Enabled = true
	c.Event.Store.Driver = data.SQLite
	c.Event.Store.Path = filepath.Join("data", "userfanout.db")
	c.Event.Store.RetentionDays = 90
	c.Event.Handlers.Async = true
	c.Event.Handlers.Timeout = 30 * time.Second
	c.Event.Handlers.RetryCount = 3
	c.HTTP.Addr = "127.0.0.1:8080"
	c.Analytics.FailEvery = 3
	return c
}

// key is one configuration key: its dotted name and the field it sets.
type key struct {
	name string
	ptr  any // *int, *bool, *string or *time.Duration
}

func (c *Config) keys() []key {
	return []key{
		{"event.bus.buffer_size", &c.Event.Bus.BufferSize},
		{"event.bus.workers", &c.Event.Bus.Workers},
		{"event.store.enabled", &c.Event.Store.Enabled},
		{"event.store.driver", &c.Event.Store.Driver},
		{"event.store.path", &c.Event.Store.Path},
		{"event.store.dsn", &c.Event.Store.DSN},
		{"event.store.retention_days", &c.Event.Store.RetentionDays},
		{"event.handlers.async", &c.Event.Handlers.Async},
		{"event.handlers.timeout", &c.Event.Handlers.Timeout},
		{"event.handlers.retry_count", &c.Event.Handlers.RetryCount},
		{"http.addr", &c.HTTP.Addr},
		{"http.publish_token", &c.HTTP.PublishToken},
		{"analytics.fail_every", &c.Analytics.FailEvery},
	}
}

// LoadConfig reads the configuration file at path over [Defaults].
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(path, b)
}

// ParseConfig parses a configuration file's content over [Defaults]. It is
// strict: an unknown or repeated key, a value of the wrong type and a value
// out of range are refused, each with an error that names the file, line
// and key; all of them, not just the first.
func ParseConfig(name string, b []byte) (Config, error) {
	c := Defaults()
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", name, err)
	}
	p := parser{file: name, keys: map[string]any{}, lines: map[string]int{}}
	for _, k := range c.keys() {
		p.keys[k.name] = k.ptr
	}
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		switch {
		case root.Kind == yaml.MappingNode:
			p.mapping(root, "")
		case root.ShortTag() != "!!null":
			p.errorf(root.Line, "", "the file must hold keys such as event.bus.workers, as nested mappings")
		}
	}
	// A value that was refused left its default, which check passes: its
	// error is reported once.
	p.check(&c)
	if len(p.errs) > 0 {
		return Config{}, errors.Join(p.errs...)
	}
	return c, nil
}

type parser struct {
	file  string
	keys  map[string]any // by dotted name
	lines map[string]int // where each key given was
	errs  []error
}

func (p *parser) errorf(line int, key, format string, args ...any) {
	where := p.file
	if line > 0 {
		where += ":" + strconv.Itoa(line)
	}
	if key != "" {
		where += ": " + key
	}
	p.errs = append(p.errs, fmt.Errorf("config: %s: %s", where, fmt.Sprintf(format, args...)))
}

// mapping reads the keys of n, a mapping under prefix.
func (p *parser) mapping(n *yaml.Node, prefix string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		name := prefix + k.Value
		if k.Kind != yaml.ScalarNode {
			p.errorf(k.Line, prefix+"?", "a key must be a plain name")
			continue
		}
		if line, dup := p.lines[name]; dup {
			p.errorf(k.Line, name, "given twice (first on line %d)", line)
			continue
		}
		p.lines[name] = k.Line
		if ptr, ok := p.keys[name]; ok {
			p.value(v, name, ptr)
			continue
		}
		if !p.section(name) {
			p.errorf(k.Line, name, "unknown key; known keys%s: %s", p.under(prefix), strings.Join(p.known(prefix), ", "))
			continue
		}
		switch {
		case v.Kind == yaml.MappingNode:
			p.mapping(v, name+".")
		case v.ShortTag() == "!!null": // an empty section
		default:
			p.errorf(v.Line, name, "want a mapping of keys (%s), got %q", strings.Join(p.known(name+"."), ", "), v.Value)
		}
	}
}

// section reports whether name is a prefix of known keys.
func (p *parser) section(name string) bool { return len(p.known(name+".")) > 0 }

// known lists the keys under prefix, relative to it, one level deep.
func (p *parser) known(prefix string) []string {
	var out []string
	for k := range p.keys {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			first, _, _ := strings.Cut(rest, ".")
			if !slices.Contains(out, first) {
				out = append(out, first)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (p *parser) under(prefix string) string {
	if prefix == "" {
		return ""
	}
	return " under " + strings.TrimSuffix(prefix, ".")
}

// value sets the field ptr from v, the value of key name. A value must
// be of the field's YAML type: no number for a string, no "yes" for a
// boolean, no bare number for a duration.
func (p *parser) value(v *yaml.Node, name string, ptr any) {
	fail := func(hint string) { p.errorf(v.Line, name, "want %s, got %s%s", want(ptr), describe(v), hint) }
	tag := v.ShortTag()
	if v.Kind != yaml.ScalarNode || tag == "!!null" {
		fail("")
		return
	}
	switch f := ptr.(type) {
	case *int:
		if tag != "!!int" || v.Decode(f) != nil {
			fail("")
		}
	case *bool:
		if tag != "!!bool" || v.Decode(f) != nil {
			fail("")
		}
	case *string:
		if tag != "!!str" {
			fail(" (quote it)")
			return
		}
		*f = v.Value
	case *time.Duration:
		d, err := time.ParseDuration(v.Value)
		if tag != "!!str" || err != nil {
			fail("")
			return
		}
		*f = d
	}
}

func want(ptr any) string {
	switch ptr.(type) {
	case *int:
		return "an integer"
	case *bool:
		return "true or false"
	case *time.Duration:
		return "a duration with its unit, such as 30s or 1m30s"
	}
	return "a string"
}

func describe(v *yaml.Node) string {
	switch {
	case v.Kind == yaml.MappingNode:
		return "a mapping"
	case v.Kind == yaml.SequenceNode:
		return "a list"
	case v.ShortTag() == "!!null":
		return "no value"
	}
	return strconv.Quote(v.Value)
}

// check refuses values out of range and keys that contradict each other.
func (p *parser) check(c *Config) {
	bad := func(key, format string, args ...any) { p.errorf(p.lines[key], key, format, args...) }
	given := func(key string) bool { _, ok := p.lines[key]; return ok }
	if n := c.Event.Bus.BufferSize; n < 0 {
		bad("event.bus.buffer_size", "must be 0 (unbuffered) or more, got %d", n)
	}
	if n := c.Event.Bus.Workers; n < 1 {
		bad("event.bus.workers", "must be at least 1, got %d", n)
	}
	if !c.Event.Store.Enabled {
		bad("event.store.enabled", "false is not supported: the user service publishes through the transactional outbox, "+
			"which appends to the event store in the user's transaction, and /events reads the store; set it to true")
	}
	switch c.Event.Store.Driver {
	case data.SQLite:
		if c.Event.Store.Path == "" {
			bad("event.store.path", "must name the SQLite file")
		}
		if given("event.store.dsn") {
			bad("event.store.dsn", "set, but event.store.driver is sqlite; the DSN is for postgres")
		}
	case data.Postgres:
		if c.Event.Store.DSN == "" {
			bad("event.store.dsn", "required when event.store.driver is postgres, such as postgres://user:password@localhost:5432/app")
		}
		if given("event.store.path") {
			bad("event.store.path", "set, but event.store.driver is postgres, which does not use it")
		}
	default:
		bad("event.store.driver", "want sqlite or postgres, got %q", c.Event.Store.Driver)
	}
	const maxDays = 100 * 365
	if n := c.Event.Store.RetentionDays; n < 0 || n > maxDays {
		bad("event.store.retention_days", "must be from 0 (keep for ever) to %d, got %d", maxDays, n)
	}
	if d := c.Event.Handlers.Timeout; d < 0 {
		bad("event.handlers.timeout", "must be 0 (none) or positive, got %v", d)
	}
	if n := c.Event.Handlers.RetryCount; n < 0 {
		bad("event.handlers.retry_count", "must be 0 or more, got %d", n)
	}
	if err := checkAddr(c.HTTP.Addr); err != nil {
		bad("http.addr", "%v", err)
	}
	if t := c.HTTP.PublishToken; strings.ContainsFunc(t, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		bad("http.publish_token", "must not contain spaces or control characters")
	}
	if n := c.Analytics.FailEvery; n < 0 {
		bad("analytics.fail_every", "must be 0 (never fail) or more, got %d", n)
	}
}

// checkAddr checks a listen address, host:port.
func checkAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, such as 127.0.0.1:8080, got %q", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be a number from 0 to 65535, got %q", port)
	}
	return nil
}

// dataOptions says which database to open.
func (c *Config) dataOptions(log *slog.Logger) data.Options {
	return data.Options{Driver: c.Event.Store.Driver, Path: c.Event.Store.Path, DSN: c.Event.Store.DSN, Logger: log}
}

// busOptions maps the event.* keys to the bus's options.
func (c *Config) busOptions(st store.Store, log *slog.Logger) []event.Option {
	opts := []event.Option{
		event.WithStore(st),
		event.WithBufferSize(c.Event.Bus.BufferSize),
		event.WithWorkers(c.Event.Bus.Workers),
		event.WithTimeout(c.Event.Handlers.Timeout),
		event.WithRetry(event.RetryPolicy{MaxRetries: c.Event.Handlers.RetryCount}),
		event.WithLogger(log),
	}
	if !c.Event.Handlers.Async {
		opts = append(opts, event.WithSync())
	}
	if days := c.Event.Store.RetentionDays; days > 0 {
		opts = append(opts, event.WithRetention(time.Duration(days)*24*time.Hour, 0))
	}
	return opts
}
