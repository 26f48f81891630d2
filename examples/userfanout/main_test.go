package main

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/ncore-io/event/internal/pgtest"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "userfanout-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	goleak.VerifyTestMain(pgtest.Wrap(removing{m, dir}))
}

// removing runs the tests, then removes the directory of the built
// program.
type removing struct {
	m   *testing.M
	dir string
}

func (r removing) Run() int {
	defer os.RemoveAll(r.dir)
	return r.m.Run()
}
