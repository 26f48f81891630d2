package eventtest_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// fakeTB records what a helper reports. Fatalf and FailNow end the calling
// goroutine with runtime.Goexit, as testing.T does, so a helper that goes on
// after a fatal failure is caught: run executes it in its own goroutine.
// Methods it does not implement panic through the nil embedded TB.
type fakeTB struct {
	testing.TB

	mu       sync.Mutex
	errs     []string
	fatal    bool
	stopped  bool // the helper did not return normally
	cleanups []func()
}

func (f *fakeTB) Helper()      {}
func (f *fakeTB) Name() string { return "fakeTB" }

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Error(args ...any) { f.Errorf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.FailNow()
}

func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) FailNow() {
	f.mu.Lock()
	f.fatal = true
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal || len(f.errs) > 0
}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// message returns everything reported, one report per line.
func (f *fakeTB) message() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.errs, "\n")
}

// runTB runs fn with a fresh fakeTB in a new goroutine, waits for it to
// return or stop, runs the registered cleanups (last first), and returns the
// fake for inspection.
func runTB(fn func(tb testing.TB)) *fakeTB {
	f := &fakeTB{stopped: true}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
		f.mu.Lock()
		f.stopped = false
		f.mu.Unlock()
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f
}

// wantFatal fails t unless f stopped on a fatal failure whose message
// contains every one of want.
func wantFatal(t *testing.T, f *fakeTB, want ...string) {
	t.Helper()
	if !f.fatal || !f.stopped {
		t.Fatalf("want a fatal failure that stops the helper; fatal=%v stopped=%v, messages:\n%s", f.fatal, f.stopped, f.message())
	}
	msg := f.message()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("failure message does not contain %q:\n%s", w, msg)
		}
	}
}

// wantPass fails t if f recorded any failure or did not return normally.
func wantPass(t *testing.T, f *fakeTB) {
	t.Helper()
	if f.Failed() || f.stopped {
		t.Fatalf("want no failure; stopped=%v, messages:\n%s", f.stopped, f.message())
	}
}

// TestFakeTB checks the fake itself: the helpers' failure tests rely on it.
func TestFakeTB(t *testing.T) {
	t.Parallel()
	reachedAfterFatal := false
	f := runTB(func(tb testing.TB) {
		tb.Fatalf("boom %d", 1)
		reachedAfterFatal = true
	})
	if reachedAfterFatal {
		t.Fatal("code after Fatalf ran")
	}
	wantFatal(t, f, "boom 1")

	cleaned := 0
	f = runTB(func(tb testing.TB) { tb.Cleanup(func() { cleaned++ }) })
	wantPass(t, f)
	if cleaned != 1 {
		t.Fatalf("cleanup ran %d times, want 1", cleaned)
	}
}
