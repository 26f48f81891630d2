//go:build !race

package event_test

// raceEnabled reports whether the test binary was built with -race, for
// tests that size their load by it.
const raceEnabled = false
