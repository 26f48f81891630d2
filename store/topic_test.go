package store_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ncore-io/event/store"
)

func TestValidateTopic(t *testing.T) {
	t.Parallel()
	valid := []string{
		"user",
		"user.registered",
		"user.email.changed",
		"a.b.c.d.e",
		"order-42.créé",
		"x_y.z:1",
		strings.Repeat("a", store.MaxTopicLen),
	}
	for _, topic := range valid {
		if err := store.ValidateTopic(topic); err != nil {
			t.Errorf("ValidateTopic(%q) = %v, want nil", topic, err)
		}
	}
	invalid := map[string]string{
		"":                                       "empty",
		".":                                      "empty segment",
		"user.":                                  "empty segment",
		".user":                                  "empty segment",
		"user..registered":                       "empty segment",
		"user.*":                                 "wildcard",
		"user.>":                                 "wildcard",
		">":                                      "wildcard",
		"*":                                      "wildcard",
		"user.reg*":                              "whole segment",
		"us>er":                                  "whole segment",
		"user registered":                        "white space",
		"user.\tx":                               "white space",
		"user.\x00":                              "unprintable",
		"user.\x7f":                              "unprintable",
		"user.\xff":                              "UTF-8",
		strings.Repeat("a", store.MaxTopicLen+1): "longer than",
	}
	for topic, want := range invalid {
		err := store.ValidateTopic(topic)
		if err == nil {
			t.Errorf("ValidateTopic(%q) = nil, want an error", topic)
			continue
		}
		if !errors.Is(err, store.ErrInvalidTopic) {
			t.Errorf("ValidateTopic(%q) = %v, does not match ErrInvalidTopic", topic, err)
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateTopic(%q) = %q, want it to mention %q", topic, err, want)
		}
	}
}

func TestValidatePattern(t *testing.T) {
	t.Parallel()
	valid := []string{"user", "user.registered", "user.*", "*.created", "*", ">", "user.>", "*.*.>", "a.*.c.>"}
	for _, p := range valid {
		if err := store.ValidatePattern(p); err != nil {
			t.Errorf("ValidatePattern(%q) = %v, want nil", p, err)
		}
	}
	invalid := map[string]string{
		"":           "empty",
		"user..x":    "empty segment",
		">.user":     "before its last segment",
		"user.>.x":   "before its last segment",
		"user.reg*":  "whole segment",
		"user.>x":    "whole segment",
		"user .x":    "white space",
		"user.\xfe":  "UTF-8",
		"user.\x01x": "unprintable",
	}
	for p, want := range invalid {
		err := store.ValidatePattern(p)
		if err == nil {
			t.Errorf("ValidatePattern(%q) = nil, want an error", p)
			continue
		}
		if !errors.Is(err, store.ErrInvalidTopic) || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidatePattern(%q) = %q, want ErrInvalidTopic mentioning %q", p, err, want)
		}
	}
}

func TestMatchTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, topic string
		want           bool
	}{
		{"", "user.registered", true},
		{">", "user", true},
		{">", "user.registered.x", true},
		{"user", "user", true},
		{"user", "user.registered", false},
		{"user.registered", "user.registered", true},
		{"user.registered", "user.registere", false},
		{"user.registered", "user.registered.x", false},
		{"user.registered.x", "user.registered", false},
		{"user.*", "user.registered", true},
		{"user.*", "user", false},
		{"user.*", "user.email.changed", false},
		{"user.*", "users.registered", false},
		{"*.created", "order.created", true},
		{"*.created", "order.updated", false},
		{"*", "user", true},
		{"*", "user.x", false},
		{"user.*.changed", "user.email.changed", true},
		{"user.*.changed", "user.email.deleted", false},
		{"user.>", "user.registered", true},
		{"user.>", "user.email.changed", true},
		{"user.>", "user", false},
		{"user.>", "users.registered", false},
		{"*.>", "a", false},
		{"*.>", "a.b", true},
		{"*.*.>", "a.b", false},
		{"*.*.>", "a.b.c.d", true},
	}
	for _, tt := range tests {
		if got := store.MatchTopic(tt.pattern, tt.topic); got != tt.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
	}
}

func TestLiteralPrefix(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, prefix string
		literal         bool
	}{
		{"", "", false},
		{"user.registered", "user.registered", true},
		{"user", "user", true},
		{"user.*", "user.", false},
		{"user.*.changed", "user.", false},
		{"order.>", "order.", false},
		{"a.b.>", "a.b.", false},
		{"*.created", "", false},
		{">", "", false},
		{"*", "", false},
	}
	for _, tt := range tests {
		if got := store.IsLiteral(tt.pattern); got != tt.literal {
			t.Errorf("IsLiteral(%q) = %v, want %v", tt.pattern, got, tt.literal)
		}
		got := store.LiteralPrefix(tt.pattern)
		if got != tt.prefix {
			t.Errorf("LiteralPrefix(%q) = %q, want %q", tt.pattern, got, tt.prefix)
		}
	}
}

// Every topic a pattern matches starts with the pattern's literal prefix,
// which is what lets stores narrow a scan with it.
func TestLiteralPrefixCoversMatches(t *testing.T) {
	t.Parallel()
	topics := []string{"user", "user.registered", "user.email.changed", "users.x", "order.created", "order.item.added", "a.b.c"}
	patterns := []string{"user", "user.*", "user.>", "user.*.changed", "*.created", "order.>", "*", ">", "a.*.c", "*.*.>"}
	for _, p := range patterns {
		prefix := store.LiteralPrefix(p)
		for _, topic := range topics {
			if store.MatchTopic(p, topic) && !strings.HasPrefix(topic, prefix) {
				t.Errorf("MatchTopic(%q, %q) but topic lacks prefix %q", p, topic, prefix)
			}
		}
	}
}

func FuzzMatchTopic(f *testing.F) {
	for _, s := range []string{"user.*", "user.>", ">", "*.x", "a.b"} {
		f.Add(s, "user.registered")
	}
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		if store.ValidatePattern(pattern) != nil || store.ValidateTopic(topic) != nil {
			return
		}
		got := store.MatchTopic(pattern, topic)
		if got && !strings.HasPrefix(topic, store.LiteralPrefix(pattern)) {
			t.Fatalf("MatchTopic(%q, %q) but topic lacks literal prefix %q", pattern, topic, store.LiteralPrefix(pattern))
		}
		if store.IsLiteral(pattern) && got != (pattern == topic) {
			t.Fatalf("literal pattern %q vs topic %q: match = %v", pattern, topic, got)
		}
		if got != matchRef(pattern, topic) {
			t.Fatalf("MatchTopic(%q, %q) = %v, reference says %v", pattern, topic, got, !got)
		}
	})
}

// matchRef is a plain segment-by-segment reference for MatchTopic.
func matchRef(pattern, topic string) bool {
	ps, ts := strings.Split(pattern, "."), strings.Split(topic, ".")
	for i, p := range ps {
		if p == ">" {
			return len(ts) > i
		}
		if i >= len(ts) || (p != "*" && p != ts[i]) {
			return false
		}
	}
	return len(ps) == len(ts)
}
