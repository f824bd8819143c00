package appliance

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
)

func TestParseMiB(t *testing.T) {
	tests := []struct {
		in   string
		want int // 0: error
	}{
		{"512", 512}, {"512M", 512}, {"2G", 2048}, {"0", 0}, {"-1G", 0}, {"1.5G", 0}, {"2T", 0}, {"", 0}, {"07", 0},
	}
	for _, tt := range tests {
		got, err := parseMiB(tt.in)
		if tt.want == 0 && err == nil || tt.want != 0 && (err != nil || got != tt.want) {
			t.Errorf("parseMiB(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestVMVerbs(t *testing.T) {
	f := &fakeState{recs: map[string]map[string]string{}}
	sock := f.serve(t)
	kernel := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(kernel, []byte("k"), 0o644); err != nil {
		t.Fatal(err)
	}
	verbs := []verb.Verb{
		{Name: "vm create", Summary: "s", Run: VMCreate},
		{Name: "vm ls", Summary: "s", Run: VMLs},
		{Name: "vm info", Summary: "s", Run: VMInfo},
		{Name: "vm start", Summary: "s", Run: VMStart},
		{Name: "vm stop", Summary: "s", Run: VMStop},
		{Name: "vm rm", Summary: "s", Run: VMRm},
	}
	dispatchTable(t, verbs, sock, []verbCase{
		{[]string{"vm", "create", "web1", "--cpus", "2", "--memory", "1G", "--kernel", kernel, "--append", "console=ttyS0"}, 0, "created vm web1"},
		{[]string{"vm", "create", "web1", "--kernel", kernel}, verb.ExitError, "exists already"},
		{[]string{"vm", "create", "web2"}, verb.ExitUsage, "nothing to boot"},
		{[]string{"vm", "create", "web2", "--disk", "web2-0"}, verb.ExitUsage, "vsd:NAME (an existing VSD)"},
		{[]string{"vm", "create", "web2", "--disk", "vsd:web2-0", "--memory", "lots"}, verb.ExitUsage, "--memory"},
		{[]string{"vm", "create", "web2", "--disk", "vsd:web2-0", "--net", "wan"}, verb.ExitUsage, "default or none"},
		{[]string{"vm", "create", "web2", "--disk", "vsd:web2-0", "--cpus", "999"}, verb.ExitUsage, "cpus"},
		{[]string{"vm", "create", "Web2", "--disk", "vsd:web2-0"}, verb.ExitUsage, "name must be"},
		{[]string{"vm", "create", "web2", "--kernel", "/no/such/kernel"}, verb.ExitError, "every node"},
		{[]string{"vm", "create", "web2", "--initrd", "/i"}, verb.ExitUsage, "need a kernel"},
		{[]string{"vm", "create", "db1", "--disk", "vsd:db1-0", "--net", "none", "--stopped"}, 0, "created vm db1"},
		{[]string{"vm", "ls"}, 0, "web1  stopped  running  -     0      2     1024 MiB"},
		{[]string{"vm", "ls", "--json"}, 0, `"name": "db1"`},
		{[]string{"vm", "info", "web1"}, 0, "append:      console=ttyS0"},
		{[]string{"vm", "info", "db1", "--json"}, 0, `"vsd": "db1-0"`},
		{[]string{"vm", "info", "nope"}, verb.ExitError, `no vm named "nope"`},
		{[]string{"vm", "rm", "web1"}, verb.ExitError, "shoal vm stop"},
		{[]string{"vm", "stop", "web1", "--force"}, 0, "vm web1: stopping"},
		{[]string{"vm", "info", "web1", "--json"}, 0, `"desired": "stopped"`},
		{[]string{"vm", "start", "nope"}, verb.ExitError, `no vm named "nope"`},
		{[]string{"vm", "rm", "web1"}, 0, "removed vm web1"},
		{[]string{"vm", "rm", "db1"}, 0, "removed vm db1"},
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.recs) != 0 {
		t.Errorf("records left after rm: %v", f.recs)
	}
}
