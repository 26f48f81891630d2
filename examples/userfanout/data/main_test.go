package data_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/ncore-io/event/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }
