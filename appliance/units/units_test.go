package units

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/install.golden")

// render is the installed tree as text: the golden format.
func render(root string) (string, error) {
	var b strings.Builder
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "--- link %s -> %s\n", rel, target)
		case info.Mode().IsRegular():
			content, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "--- file %s (%v)\n%s", rel, info.Mode().Perm(), content)
		}
		return nil
	})
	return b.String(), err
}

func TestInstallGolden(t *testing.T) {
	root := t.TempDir()
	p, err := NewPlan(Daemons)
	if err != nil {
		t.Fatal(err)
	}
	if err := Install(root, p); err != nil {
		t.Fatal(err)
	}
	// A second run changes nothing.
	if err := Install(root, p); err != nil {
		t.Fatalf("second install: %v", err)
	}
	got, err := render(root)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "install.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("installed tree differs from %s (-want +got); run go test -update if intended:\n%s", golden, diff)
	}
}

// unitKeys parses a unit file into section.key → values.
func unitKeys(content []byte) map[string][]string {
	out := map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(content), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		out[section+"."+k] = append(out[section+"."+k], strings.Fields(v)...)
	}
	return out
}

func TestUnitInvariants(t *testing.T) {
	p, err := NewPlan(Daemons)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]map[string][]string{}
	for _, f := range p.Files {
		byName[filepath.Base(f.Path)] = unitKeys(f.Content)
	}
	for _, d := range Daemons {
		u := byName[UnitName(d)]
		if u == nil {
			t.Fatalf("no unit for daemon %s", d)
		}
		checks := map[string][]string{
			"Service.Type":      {"notify"},
			"Service.Restart":   {"always"},
			"Service.ExecStart": {"/usr/bin/shoal", d},
			"Install.WantedBy":  {"multi-user.target"},
		}
		for k, want := range checks {
			if diff := cmp.Diff(want, u[k]); diff != "" {
				t.Errorf("%s %s (-want +got)\n%s", UnitName(d), k, diff)
			}
		}
		if len(u["Service.WatchdogSec"]) != 1 {
			t.Errorf("%s has no WatchdogSec", UnitName(d))
		}
		if d != "netd" {
			for _, k := range []string{"Unit.After", "Unit.Wants"} {
				if !slices.Contains(u[k], "shoal-netd.service") {
					t.Errorf("%s: %s = %v, lacks shoal-netd.service", UnitName(d), k, u[k])
				}
			}
		}
		wantKill := []string(nil)
		if d == "hypervisor" {
			wantKill = []string{"process"}
		}
		if diff := cmp.Diff(wantKill, u["Service.KillMode"]); diff != "" {
			t.Errorf("%s KillMode (-want +got)\n%s", UnitName(d), diff)
		}
	}
	h := byName["shoal-health.service"]
	if diff := cmp.Diff([]string{"oneshot"}, h["Service.Type"]); diff != "" {
		t.Errorf("shoal-health Type (-want +got)\n%s", diff)
	}
	if !slices.Contains(h["Install.RequiredBy"], "boot-complete.target") || !slices.Contains(h["Unit.Before"], "boot-complete.target") {
		t.Errorf("shoal-health is not required by and ordered before boot-complete.target: %v", h)
	}
	if !slices.ContainsFunc(p.Links, func(l Link) bool {
		return l.Path == "etc/systemd/system/boot-complete.target.requires/shoal-health.service"
	}) {
		t.Errorf("shoal-health is not enabled into boot-complete.target.requires: %v", p.Links)
	}
}

func TestPlanLeavesOutMissingDaemons(t *testing.T) {
	p, err := NewPlan([]string{"peer"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range p.Files {
		got = append(got, filepath.Base(f.Path))
	}
	want := []string{"shoal-peer.service", "shoal-health.service", "shoal.conf"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("files (-want +got)\n%s", diff)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	if _, err := NewPlan([]string{"frobd"}); err == nil || !strings.Contains(err.Error(), `"frobd"`) {
		t.Errorf("unknown daemon: err = %v", err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := NewPlan(Daemons)
	for _, root := range []string{notDir, filepath.Join(t.TempDir(), "missing")} {
		if err := Install(root, p); err == nil {
			t.Errorf("Install(%q) succeeded", root)
		}
	}
	if content, _ := os.ReadFile(notDir); !bytes.Equal(content, nil) {
		t.Errorf("file root was changed")
	}
}
