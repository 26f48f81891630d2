package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// TestResumeAfterKill runs the saga in a child process of this binary.
	if os.Getenv(childDBEnv) != "" {
		os.Exit(child())
	}
	goleak.VerifyTestMain(m)
}
