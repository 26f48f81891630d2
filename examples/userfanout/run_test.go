package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ncore-io/event"
)

// -smoke, what CI runs: it signs users up over HTTP, waits for the
// services, prints the stats, and exits by itself with 0.
func TestSmoke(t *testing.T) {
	t.Parallel()
	var out, errs syncBuffer
	if code := run([]string{"-smoke"}, &out, &errs); code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s\nstdout:\n%s", code, errs.String(), out.String())
	}
	got := out.String()
	for _, want := range []string{
		"listening on http://127.0.0.1:",
		`POST /users → 201 {"id":"1","email":"ada@example.com","name":"Ada Lovelace"`,
		`POST /events → 201 {"id":`,
		`"display_name":"Ada Lovelace"`,
		`msg="welcome email sent" service=notification to=user@example.com user_id=123`,
		`msg="event: handler failed, dead-lettering" subscription=analytics`,
		"stopped; every event in the store was handled",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the output lacks %q:\n%s", want, got)
		}
	}
	m := regexp.MustCompile(`(?s)GET /events/stats → 200 (\{.*?\n\})`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no stats in the output:\n%s", got)
	}
	var st event.Stats
	if err := json.Unmarshal([]byte(m[1]), &st); err != nil {
		t.Fatal(err)
	}
	// 3 sign-ups and the posted event, 4 services; the 3rd sign-up fails
	// analytics on every attempt: 1 + retry_count 3.
	if st.Published != 4 || st.Delivered != 16 || st.Processed != 15 || st.Failed != 1 || st.Retried != 3 || st.DeadLettered != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRunRefusesBadArguments(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "event:\n  bus:\n    workers: -1\n")
	for _, c := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"-config", bad}, 1, "bad.yaml:3: event.bus.workers: must be at least 1, got -1"},
		{[]string{"-config", filepath.Join(t.TempDir(), "none.yaml")}, 1, "none.yaml: no such file"},
		{[]string{"-addr", "8080"}, 2, `-addr: want host:port, such as 127.0.0.1:8080, got "8080"`},
		{[]string{"-nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"serve"}, 2, `unexpected arguments ["serve"]`},
	} {
		var out, errs syncBuffer
		if code := run(c.args, &out, &errs); code != c.code || !strings.Contains(errs.String(), c.says) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", c.args, code, errs.String(), c.code, c.says)
		}
	}
}
