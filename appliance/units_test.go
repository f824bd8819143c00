package appliance

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
)

func dispatchUnitVerbs(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	verbs := []verb.Verb{
		{Name: "install-units", Summary: "x", Run: InstallUnits},
		{Name: "health", Summary: "x", Run: Health},
	}
	var stdout, stderr bytes.Buffer
	code := verb.Dispatch(context.Background(), verbs, args, nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestInstallUnitsVerb(t *testing.T) {
	root := t.TempDir()
	code, out, errOut := dispatchUnitVerbs(t, "install-units", "--root", root, "--daemons", "netd,peer")
	if code != verb.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "installed 4 files") {
		t.Errorf("stdout = %q", out)
	}
	for _, p := range []string{
		"usr/lib/systemd/system/shoal-netd.service",
		"usr/lib/systemd/system/shoal-peer.service",
		"etc/systemd/system/boot-complete.target.requires/shoal-health.service",
	} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("missing %s: %v", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "usr/lib/systemd/system/shoal-scribe.service")); err == nil {
		t.Error("scribe unit installed though not asked for")
	}

	for _, args := range [][]string{
		{"install-units"},
		{"install-units", "--root", root, "--daemons", "frobd"},
		{"install-units", "--root", root, "extra"},
	} {
		if code, _, _ := dispatchUnitVerbs(t, args...); code != verb.ExitUsage {
			t.Errorf("%v: exit %d, want usage error", args, code)
		}
	}
}

func TestHealthVerbOnANonAppliance(t *testing.T) {
	// An empty root has no state partition definition and no units: no
	// check applies and the gate passes.
	code, out, errOut := dispatchUnitVerbs(t, "health", "--root", t.TempDir())
	if code != verb.ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "ok (0 checks passed)") {
		t.Errorf("stdout = %q", out)
	}
	// A root with the state definition but no partition fails.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/repart.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/lib/repart.d/50-shoal-state.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = dispatchUnitVerbs(t, "health", "--root", root)
	if code != verb.ExitError || !strings.Contains(out, "state partition: FAIL") {
		t.Errorf("exit %d, stdout %q; want a failed state check", code, out)
	}
}
