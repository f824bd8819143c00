package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/hypervisor"
	"github.com/shoal-hci/shoal/hypervisor/consoletest"
	"github.com/shoal-hci/shoal/peer/client"
)

// consoleVM is the ID of the VM whose fake serial console the console
// verb test attaches to.
const consoleVM = "00112233445566778899aabbccddeeff"

// fakeConsoleNode serves a local API (vm records, status, members) and
// a fake QEMU serial console for consoleVM in a runtime dir; it returns
// the peer socket and the runtime dir.
func fakeConsoleNode(t *testing.T, vms map[string]map[string]string) (string, string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/state/get", func(w http.ResponseWriter, r *http.Request) {
		f, ok := vms[r.URL.Query().Get("key")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(client.Error{Msg: "no such record"})
			return
		}
		rec := client.StateRecord{Key: r.URL.Query().Get("key"), Fields: map[string]client.StateField{}}
		for k, v := range f {
			rec.Fields[k] = client.StateField{Kind: client.KindRegister, Value: v}
		}
		json.NewEncoder(w).Encode(rec)
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(client.Status{Self: client.Member{ID: "n1", Name: "node1"}})
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]client.Member{{ID: "n1", Name: "node1", State: "alive", Gossip: "[fd53::1]:7946"},
			{ID: "n2", Name: "node2", State: "failed", Gossip: "[fd53::2]:7946"}})
	})
	sock := serveUnix(t, mux)

	rt := filepath.Dir(sock) // short, and removed with the peer socket
	consoletest.Serial(t, rt, consoleVM, "booted earlier\n")
	return sock, rt
}

func TestVMConsoleVerb(t *testing.T) {
	vm := func(node, status string) map[string]string {
		r := hypervisor.VMRecord{Name: "x", ID: consoleVM, Desired: hypervisor.DesiredRunning, CPUs: 1, MemoryMiB: 64}
		f := r.DesiredFields()
		f[hypervisor.FieldNode], f[hypervisor.FieldStatus] = node, status
		return f
	}
	sock, rt := fakeConsoleNode(t, map[string]map[string]string{
		"vm/web1": vm("n1", "running"), "vm/off": vm("", "stopped"), "vm/far": vm("n2", "running")})
	verbs := []verb.Verb{{Name: "vm console", Summary: "s", Run: VMConsole}}
	run := func(stdin string, args ...string) (int, string) {
		var out, errb bytes.Buffer
		args = append(append([]string{"vm", "console"}, args...), "--socket", sock, "--runtime-dir", rt)
		code := verb.Dispatch(context.Background(), verbs, args, strings.NewReader(stdin), &out, &errb)
		return code, out.String() + errb.String()
	}
	tests := []struct {
		stdin    string
		args     []string
		code     int
		contains string
	}{
		{"root\n", []string{"web1", "--until", "ROOT", "--timeout", "20s"}, 0, "login: ROOT"},
		{"", []string{"web1", "--history", "1024", "--until", "login:", "--timeout", "20s"}, 0, "booted earlier\nlogin:"},
		{"", []string{"web1", "--until", "never printed", "--timeout", "300ms"}, verb.ExitError, "did not appear on the console within 300ms"},
		{"", []string{"off"}, verb.ExitError, "vm off is not running"},
		{"", []string{"far"}, verb.ExitError, "node node2 (n2), which is failed: unreachable"},
		{"", []string{"nope"}, verb.ExitError, `no vm named "nope"`},
		{"", []string{"web1", "--history", "-1"}, verb.ExitUsage, "--history"},
	}
	for _, tt := range tests {
		code, got := run(tt.stdin, tt.args...)
		if code != tt.code || !strings.Contains(got, tt.contains) {
			t.Errorf("shoal vm console %s: exit %d, output:\n%s\nwant exit %d containing %q", strings.Join(tt.args, " "), code, got, tt.code, tt.contains)
		}
	}

	// Someone else attached on this node: the verb says so.
	held, err := hypervisor.AttachConsole(rt, consoleVM, "a test")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if code, got := run("", "web1", "--until", "x", "--timeout", "5s"); code != verb.ExitError || !strings.Contains(got, "console of vm web1 on this node (node1) is in use by a test") {
		t.Errorf("console while attached elsewhere: exit %d, %q; want it reported in use", code, got)
	}
}
