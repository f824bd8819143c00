package proccluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BuildShoal builds the module's shoal binary into out. The module is the
// one containing the working directory (go env GOMOD).
func BuildShoal(ctx context.Context, out string) error {
	return buildPkg(ctx, "./appliance/cmd/shoal", out)
}

// BuildHelper builds shoal-qa (which has the fusedisk verb) into out.
func BuildHelper(ctx context.Context, out string) error {
	return buildPkg(ctx, "./qa/cmd/shoal-qa", out)
}

func buildPkg(ctx context.Context, pkg, out string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("find the module (go env GOMOD): %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return fmt.Errorf("not inside the shoal module: run from the repository or pass the binary explicitly (--shoal)")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = filepath.Dir(mod)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// daemonOrder is the order daemons start in; others are ignored.
var daemonOrder = []string{"netd", "peer", "scribe", "hypervisor"}

// Daemons asks bin (`help --json`) which of netd, peer, scribe and
// hypervisor it has, in start order.
func Daemons(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, bin, "help", "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("%s help --json: %w", bin, err)
	}
	var verbs []struct {
		Name   string `json:"name"`
		Daemon bool   `json:"daemon"`
	}
	if err := json.Unmarshal(out, &verbs); err != nil {
		return nil, fmt.Errorf("parse %s help --json: %w", bin, err)
	}
	has := map[string]bool{}
	for _, v := range verbs {
		if v.Daemon {
			has[v.Name] = true
		}
	}
	var ds []string
	for _, d := range daemonOrder {
		if has[d] {
			ds = append(ds, d)
		}
	}
	return ds, nil
}

// BinDir returns a directory for binaries built by this process,
// os.TempDir()/shq-bins-PID, and removes the ones of processes that are
// gone (a test binary cannot always clean up after itself).
func BinDir() (string, error) {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), "shq-bins-*"))
	for _, d := range old {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(d), "shq-bins-%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); os.IsNotExist(err) {
			os.RemoveAll(d)
		}
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("shq-bins-%d", os.Getpid()))
	return dir, os.MkdirAll(dir, 0o755)
}
