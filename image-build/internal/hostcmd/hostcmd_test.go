package hostcmd

import (
	"context"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	ctx := context.Background()
	out, err := Run(ctx, nil, "sh", "-c", "echo hello")
	if err != nil || string(out) != "hello\n" {
		t.Errorf("Run = %q, %v", out, err)
	}
	out, err = RunInput(ctx, nil, strings.NewReader("piped"), "cat")
	if err != nil || string(out) != "piped" {
		t.Errorf("RunInput = %q, %v", out, err)
	}
	out, err = RunEnv(ctx, nil, []string{"SHOAL_X=42"}, "sh", "-c", "echo $SHOAL_X")
	if err != nil || string(out) != "42\n" {
		t.Errorf("RunEnv = %q, %v", out, err)
	}
	// A failure names the command and carries stderr, or stdout if stderr is empty.
	for _, tt := range []struct{ script, want string }{
		{"echo oops >&2; exit 3", "oops"},
		{"echo on stdout; exit 1", "on stdout"},
	} {
		_, err := Run(ctx, nil, "sh", "-c", tt.script)
		if err == nil || !strings.Contains(err.Error(), "sh -c") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run(%q) error = %v, want the command and %q", tt.script, err, tt.want)
		}
	}
}

func TestNeed(t *testing.T) {
	if err := Need(map[string]string{"sh": "dash"}); err != nil {
		t.Errorf("sh missing? %v", err)
	}
	err := Need(map[string]string{"shoal-no-such-tool": "shoal-pkg"})
	if err == nil || !strings.Contains(err.Error(), "shoal-no-such-tool (Debian package shoal-pkg)") {
		t.Errorf("err = %v", err)
	}
}
