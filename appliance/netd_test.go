package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/netd"
)

func TestNetStatus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "net.json")
	st := netd.Status{
		Updated: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), Phase: netd.PhaseReady, Ready: true, Bonding: true, LAN: "bond0",
		Backplane: netd.BackplaneStatus{Interface: "bond0", Address: "fd53:686f:616c:0:2716:4a11:2fc:e621/64", State: "ok"},
		DHCP:      []netd.DHCPStatus{{Interface: "bond0", State: "bound", Address: "10.88.0.12/24", Router: "10.88.0.1", Server: "10.88.0.1"}},
		Links: []netd.LinkStatus{{Name: "eth0", Kind: "device", Up: true, Carrier: true, Master: "bond0"},
			{Name: "bond0", Kind: "bond", Up: true, Carrier: true, BondMode: "active-backup", ActiveSlave: "eth0"}},
	}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	verbs := []verb.Verb{{Name: "net status", Summary: "s", Run: NetStatus}}

	var out, errb bytes.Buffer
	if code := verb.Dispatch(context.Background(), verbs, []string{"net", "status", "--json", "--status", path}, nil, &out, &errb); code != 0 {
		t.Fatalf("net status --json: exit %d: %s", code, errb.String())
	}
	var got netd.Status
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st, got); diff != "" {
		t.Errorf("net status --json (-want +got):\n%s", diff)
	}

	out.Reset()
	if code := verb.Dispatch(context.Background(), verbs, []string{"net", "status", "--status", path}, nil, &out, &errb); code != 0 {
		t.Fatalf("net status: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"phase:      ready", "bound on bond0: 10.88.0.12/24", "fd53:686f:616c:0:2716:4a11:2fc:e621/64 on bond0 (ok)", "active-backup active eth0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("net status text lacks %q:\n%s", want, out.String())
		}
	}

	errb.Reset()
	missing := filepath.Join(t.TempDir(), "none.json")
	if code := verb.Dispatch(context.Background(), verbs, []string{"net", "status", "--status", missing}, nil, &out, &errb); code != verb.ExitError || !strings.Contains(errb.String(), "shoal netd") {
		t.Errorf("net status without a file: exit %d %q, want an error that names shoal netd", code, errb.String())
	}
}

func TestLoadOrCreateNodeID(t *testing.T) {
	t.Run("created once", func(t *testing.T) {
		dir := t.TempDir()
		a, err := LoadOrCreateNodeID(dir)
		if err != nil {
			t.Fatal(err)
		}
		b, err := LoadOrCreateNodeID(dir)
		if err != nil || a != b || !validNodeID(a) {
			t.Errorf("second load %q, %v; want %q", b, err, a)
		}
	})
	t.Run("adopts the identity", func(t *testing.T) {
		dir := t.TempDir()
		const id = "00112233445566778899aabbccddeeff"
		os.WriteFile(filepath.Join(dir, "identity.json"), []byte(`{"node_id":"`+id+`","ed25519_seed":"x"}`), 0o600)
		got, err := LoadOrCreateNodeID(dir)
		if err != nil || got != id {
			t.Errorf("got %q, %v; want the identity's %q", got, err, id)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, NodeIDFile)); strings.TrimSpace(string(b)) != id {
			t.Errorf("node-id file holds %q, want %q", b, id)
		}
	})
	t.Run("bad file is an error", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, NodeIDFile), []byte("nothex\n"), 0o644)
		if _, err := LoadOrCreateNodeID(dir); err == nil {
			t.Error("a corrupt node-id file was accepted")
		}
	})
}
