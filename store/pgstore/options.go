package pgstore

import (
	"fmt"
	"log/slog"
	"regexp"
	"strings"

	"github.com/ncore-io/event/store"
)

// Option configures a [Store] in [New] or [Open].
type Option func(*options)

type options struct {
	schema     string
	maxPayload int
	maxBatch   int
	logger     *slog.Logger
}

// Defaults of the options.
const (
	// DefaultSchema is the schema that holds the store's tables.
	DefaultSchema = "event"
	// DefaultMaxBatch is the most records one group commit carries.
	DefaultMaxBatch = 1000
)

func defaultOptions() options {
	return options{
		schema:     DefaultSchema,
		maxPayload: store.DefaultMaxPayloadSize,
		maxBatch:   DefaultMaxBatch,
	}
}

// WithSchema sets the PostgreSQL schema that holds the store's tables,
// created if missing. The default is [DefaultSchema], "event". The name must
// be a plain identifier: a letter or underscore, then letters, digits or
// underscores, at most 63 bytes, not starting with "pg_". Two stores in one
// database with different schemas are independent logs.
func WithSchema(name string) Option { return func(o *options) { o.schema = name } }

// WithMaxPayloadSize sets the largest payload, in bytes, that Append accepts.
// The default is [store.DefaultMaxPayloadSize] (1 MiB); it must be positive.
func WithMaxPayloadSize(n int) Option { return func(o *options) { o.maxPayload = n } }

// WithMaxBatch sets how many records, at most, one group commit gathers from
// concurrent Append calls into one transaction. A single Append larger than
// this still commits alone, in one transaction. The default is
// [DefaultMaxBatch]; it must be positive.
func WithMaxBatch(n int) Option { return func(o *options) { o.maxBatch = n } }

// WithLogger sets where the store logs what it recovers from on its own:
// group commits retried one caller at a time, lost LISTEN connections. The
// default, nil, logs nothing.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func (o *options) validate() error {
	switch {
	case !identRE.MatchString(o.schema):
		return fmt.Errorf("schema %q is not a plain identifier (a letter or underscore, then letters, digits or underscores, at most 63 bytes)", o.schema)
	case strings.HasPrefix(strings.ToLower(o.schema), "pg_"):
		return fmt.Errorf("schema %q starts with pg_, which PostgreSQL reserves", o.schema)
	case o.maxPayload <= 0:
		return fmt.Errorf("max payload size %d is not positive", o.maxPayload)
	case o.maxBatch <= 0:
		return fmt.Errorf("max batch %d is not positive", o.maxBatch)
	}
	return nil
}
