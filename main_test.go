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
	if os.Getenv(groupPublisherEnv) != "" {
		os.Exit(groupPublisher())
	}
	goleak.VerifyTestMain(pgtest.Wrap(m))
}
