package event_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ncore-io/event/internal/pgtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		os.Exit(crashChild())
	}
	goleak.VerifyTestMain(pgtest.Wrap(m))
}
