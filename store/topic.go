package store

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxTopicLen is the longest topic or pattern, in bytes, that [ValidateTopic]
// and [ValidatePattern] accept.
const MaxTopicLen = 255

// ErrInvalidTopic is matched by every error that [ValidateTopic] and
// [ValidatePattern] return.
var ErrInvalidTopic = errors.New("invalid topic")

// ValidateTopic reports whether topic can be published to: one or more
// dot-separated segments, each non-empty, of printable characters other than
// space, and no wildcard segment. "user.registered" is a valid topic;
// "", "user..registered", "user.*" and "user registered" are not.
func ValidateTopic(topic string) error {
	return validate(topic, false)
}

// ValidatePattern reports whether pattern can be subscribed to or used in a
// [Query]. A pattern is a topic whose segments may also be wildcards:
//
//   - "*" matches exactly one segment: "user.*" matches "user.registered"
//     but not "user" or "user.email.changed";
//   - ">" as the last segment matches one or more segments: "user.>" matches
//     "user.registered" and "user.email.changed" but not "user";
//   - a lone ">" matches every topic.
//
// A wildcard must be a whole segment: "user.reg*" is invalid.
func ValidatePattern(pattern string) error {
	return validate(pattern, true)
}

func validate(s string, pattern bool) error {
	what := "topic"
	if pattern {
		what = "pattern"
	}
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalidTopic, what)
	}
	if len(s) > MaxTopicLen {
		return fmt.Errorf("%w: %s is %d bytes, longer than %d", ErrInvalidTopic, what, len(s), MaxTopicLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalidTopic, what, s)
	}
	n := 0
	for seg := range strings.SplitSeq(s, ".") {
		n++
		switch {
		case seg == "":
			return fmt.Errorf("%w: %s %q has an empty segment", ErrInvalidTopic, what, s)
		case seg == "*" || seg == ">":
			if !pattern {
				return fmt.Errorf("%w: topic %q contains wildcard %q; wildcards belong in subscription patterns", ErrInvalidTopic, s, seg)
			}
			if seg == ">" && n != strings.Count(s, ".")+1 {
				return fmt.Errorf("%w: pattern %q has \">\" before its last segment", ErrInvalidTopic, s)
			}
			continue
		}
		for _, r := range seg {
			switch {
			case r == '*' || r == '>':
				return fmt.Errorf("%w: %s %q has %q inside segment %q; a wildcard must be a whole segment", ErrInvalidTopic, what, s, r, seg)
			case unicode.IsSpace(r):
				return fmt.Errorf("%w: %s %q contains white space", ErrInvalidTopic, what, s)
			case !unicode.IsPrint(r):
				return fmt.Errorf("%w: %s %q contains control or unprintable character %U", ErrInvalidTopic, what, s, r)
			}
		}
	}
	return nil
}

// MatchTopic reports whether topic matches pattern, both assumed valid (see
// [ValidatePattern] for the syntax). An empty pattern matches every topic, so
// a zero [Query] reads everything.
func MatchTopic(pattern, topic string) bool {
	if pattern == "" || pattern == ">" {
		return true
	}
	for {
		pseg, prest, pmore := strings.Cut(pattern, ".")
		tseg, trest, tmore := strings.Cut(topic, ".")
		switch pseg {
		case ">":
			return true // tseg is non-empty: ">" needs at least one segment, and topic has one here
		case "*":
		default:
			if pseg != tseg {
				return false
			}
		}
		if !pmore || !tmore {
			return pmore == tmore
		}
		pattern, topic = prest, trest
	}
}

// IsLiteral reports whether pattern has no wildcard, that is whether it
// matches exactly one topic. Stores use it to turn a pattern into an equality
// test, and [LiteralPrefix] to turn it into a prefix scan.
func IsLiteral(pattern string) bool {
	return pattern != "" && !strings.Contains(pattern, "*") && !strings.Contains(pattern, ">")
}

// LiteralPrefix returns the longest prefix, ending in ".", that every topic
// matching pattern starts with: "user.*.changed" gives "user.", "order.>"
// gives "order.", "*.created" gives "". A literal pattern gives itself.
// Stores use it to narrow an index scan before filtering with [MatchTopic].
func LiteralPrefix(pattern string) string {
	i := strings.IndexAny(pattern, "*>")
	if i < 0 {
		return pattern
	}
	return pattern[:i]
}
