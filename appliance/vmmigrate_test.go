package appliance

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/hypervisor"
	"github.com/shoal-hci/shoal/peer/client"
)

func TestVMMigrateVerb(t *testing.T) {
	web1 := hypervisor.VMRecord{Name: "web1", ID: strings.Repeat("ab", 16), Desired: hypervisor.DesiredRunning, CPUs: 1, MemoryMiB: 512}
	big := web1
	big.Name, big.ID, big.MemoryMiB = "big", strings.Repeat("cd", 16), 2048
	off := web1
	off.Name, off.ID = "off", strings.Repeat("ef", 16)
	db := web1
	db.Name, db.ID = "db", strings.Repeat("12", 16)
	db.Disks = []hypervisor.VMDisk{{VSD: "db-0"}, {VSD: "debian-12", ReadOnly: true}}
	rec := func(r hypervisor.VMRecord, status map[string]string) map[string]string {
		f := r.DesiredFields()
		for k, v := range status {
			f[k] = v
		}
		return f
	}
	running := map[string]string{hypervisor.FieldNode: "aaaa1", hypervisor.FieldEpoch: "1", hypervisor.FieldStatus: "running"}
	f := &fakeState{
		recs: map[string]map[string]string{
			"vm/web1":          rec(web1, running),
			"vm/big":           rec(big, running),
			"vm/off":           rec(off, nil),
			"vm/db":            rec(db, running),
			"hypervisor/aaaa1": {"memory_mib": "4096", "cpus": "4"},
			"hypervisor/bbbb2": {"memory_mib": "1024", "cpus": "4"},
			"hypervisor/cccc3": {"memory_mib": "4096", "cpus": "4"},
		},
		members: []client.Member{
			{ID: "aaaa1", Name: "node1", State: client.StateAlive},
			{ID: "bbbb2", Name: "node2", State: client.StateAlive},
			{ID: "cccc3", Name: "node3", State: client.StateAlive},
			{ID: "dddd4", Name: "node4", State: client.StateFailed},
		},
	}
	sock := f.serve(t)
	verbs := []verb.Verb{{Name: "vm migrate", Summary: "s", Run: VMMigrate}, {Name: "vm info", Summary: "s", Run: VMInfo}}
	dispatchTable(t, verbs, sock, []verbCase{
		{[]string{"vm", "migrate", "nope"}, verb.ExitError, `no vm named "nope"`},
		{[]string{"vm", "migrate", "off"}, verb.ExitError, "off is stopped, not running"},
		{[]string{"vm", "migrate", "db", "--to", "node3"}, 0, "migrating from node1 (aaaa1) to node3 (cccc3)"}, // writable VSD disks move with it
		{[]string{"vm", "migrate", "web1", "--to", "node1"}, verb.ExitError, "already runs on node node1"},
		{[]string{"vm", "migrate", "web1", "--to", "node9"}, verb.ExitError, `no node "node9"`},
		{[]string{"vm", "migrate", "web1", "--to", "dddd"}, verb.ExitError, "node node4 (dddd4) is failed"},
		{[]string{"vm", "migrate", "big", "--to", "bbbb2"}, verb.ExitError, "needs 2048 MiB"},
		{[]string{"vm", "migrate", "web1"}, 0, "migrating from node1 (aaaa1) to node3 (cccc3)"},
		{[]string{"vm", "migrate", "web1", "--to", "node2"}, verb.ExitError, "being migrated already"},
	})
	f.mu.Lock()
	req, ok, err := hypervisor.ParseMigrateRequest(f.recs["vm/web1"][hypervisor.FieldMigrate])
	f.mu.Unlock()
	if !ok || err != nil || req.To != "" || req.Postcopy || req.ID == "" {
		t.Errorf("request written: %+v, %v, %v; want one with an ID, no destination (the source picks)", req, ok, err)
	}

	// vm info shows a migration's outcome.
	f.mu.Lock()
	f.recs["vm/web1"][hypervisor.FieldMigration] = `{"id":"x","to":"cccc3","phase":"failed","transferred":1048576,"total":536870912,"error":"destination died"}`
	f.mu.Unlock()
	var out, errb bytes.Buffer
	verb.Dispatch(context.Background(), verbs, []string{"vm", "info", "web1", "--socket", sock}, nil, &out, &errb)
	if want := "to cccc3: failed, pre-copy, 1.0 MiB of 512.0 MiB sent: destination died"; !strings.Contains(out.String(), want) {
		t.Errorf("vm info:\n%s\nwant a line with %q", out.String(), want)
	}
}

// verbCase is one CLI call of a verb table test: its arguments (the
// --socket flag is added), its exit code and a piece of its output.
type verbCase struct {
	args     []string
	code     int
	contains string
}

// dispatchTable runs each case against the fake local API at sock.
func dispatchTable(t *testing.T, verbs []verb.Verb, sock string, cases []verbCase) {
	t.Helper()
	for _, tt := range cases {
		var out, errb bytes.Buffer
		args := append(append([]string(nil), tt.args...), "--socket", sock)
		code := verb.Dispatch(context.Background(), verbs, args, nil, &out, &errb)
		got := out.String() + errb.String()
		if code != tt.code || !strings.Contains(got, tt.contains) {
			t.Errorf("shoal %s: exit %d, output:\n%s\nwant exit %d containing %q", strings.Join(tt.args, " "), code, got, tt.code, tt.contains)
		}
	}
}
