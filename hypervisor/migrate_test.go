package hypervisor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/peertest"
)

// running lists the VM's copies that run or could resume (paused ones
// count): every live process except an incoming QEMU still waiting for
// the VM and a source left in postmigrate.
func (p *procs) running(id string) []*fakeMachine {
	var out []*fakeMachine
	for _, m := range p.live(id) {
		if st, _ := m.Status(context.Background()); st != qemu.StatusMigrating && st != qemu.StatusStopped {
			out = append(out, m)
		}
	}
	return out
}

// listener is the incoming fake QEMU at uri.
func (p *procs) listener(uri string) *fakeMachine {
	p.mu.Lock()
	all := append([]*fakeMachine(nil), p.all...)
	p.mu.Unlock()
	for _, m := range all {
		select {
		case <-m.exited:
			continue
		default:
		}
		if fakeURI(m.node, m.spec.ID) == uri {
			return m
		}
	}
	return nil
}

func fakeURI(node, id string) string { return "fake:" + node + ":" + id }

// MigrationTLS returns credentials that name the nodes: the fake QEMU
// checks that each side got its own.
func (r fakeRunner) MigrationTLS(other string, server bool) (*qemu.MigrationTLS, error) {
	t := &qemu.MigrationTLS{CACert: []byte("ca"), Cert: []byte(r.node), Key: []byte(r.node)}
	if !server {
		t.Hostname = other
	}
	return t, nil
}

func (r fakeRunner) StartIncoming(_ context.Context, spec qemu.Spec, host string, _ bool, tls *qemu.MigrationTLS) (machine, string, error) {
	if host == "" {
		return nil, "", errors.New("no host to listen on")
	}
	if tls == nil || tls.Hostname != "" {
		return nil, "", fmt.Errorf("incoming migration without server credentials: %+v", tls)
	}
	m := &fakeMachine{spec: spec, node: r.node, procs: r.procs, status: qemu.StatusMigrating, exited: make(chan struct{})}
	r.procs.mu.Lock()
	r.procs.all = append(r.procs.all, m)
	r.procs.mu.Unlock()
	return m, fakeURI(r.node, spec.ID), nil
}

// check counts a moment with two running copies of m's VM.
func (m *fakeMachine) check() {
	if n := len(m.procs.running(m.spec.ID)); n > 1 {
		m.procs.mu.Lock()
		m.procs.twice++
		m.procs.mu.Unlock()
	}
}

// Migrate moves the fake VM the way QEMU does: the source stops, the
// switchover hook runs while neither side runs, then the destination
// starts. procs.migrateFault fails it: "network" before the hook,
// "after-switchover" after it (the destination dies loading the VM).
func (m *fakeMachine) Migrate(ctx context.Context, uri string, opts qemu.MigrateOptions) (qemu.MigrationInfo, error) {
	m.procs.mu.Lock()
	fault := m.procs.migrateFault
	m.procs.migrateFault = ""
	m.procs.mu.Unlock()
	dst := m.procs.listener(uri)
	if dst == nil {
		return qemu.MigrationInfo{}, fmt.Errorf("%w: connection refused", qemu.ErrMigration)
	}
	if opts.TLS == nil || opts.TLS.Hostname != dst.node || string(opts.TLS.Cert) != m.node {
		return qemu.MigrationInfo{}, fmt.Errorf("%w: source credentials %+v for a destination on node %s", qemu.ErrMigration, opts.TLS, dst.node)
	}
	m.set(qemu.StatusMigrating)
	opts.Progress(qemu.MigrationInfo{Status: "active", Transferred: 1 << 20, Remaining: 255 << 20, RAMTotal: 256 << 20})
	m.check()
	if fault == "network" {
		dst.end(qemu.StatusCrashed)
		m.set(qemu.StatusRunning)
		return qemu.MigrationInfo{}, fmt.Errorf("%w: failed: connection reset", qemu.ErrMigration)
	}
	if err := opts.Switchover(ctx); err != nil {
		dst.end(qemu.StatusCrashed)
		m.set(qemu.StatusRunning)
		return qemu.MigrationInfo{}, err
	}
	m.check()
	if fault == "after-switchover" {
		dst.end(qemu.StatusCrashed)
		m.set(qemu.StatusPaused)
		return qemu.MigrationInfo{}, fmt.Errorf("%w: %w: failed", qemu.ErrMigration, qemu.ErrAfterSwitchover)
	}
	m.set(qemu.StatusStopped) // postmigrate
	dst.set(qemu.StatusRunning)
	m.check()
	return qemu.MigrationInfo{Status: "completed", Total: 2 * time.Second, Downtime: 30 * time.Millisecond,
		Transferred: 3 << 20, RAMTotal: 256 << 20, Passes: 3, Postcopy: opts.Postcopy}, nil
}

func (tn *testNodes) requestMigration(name string, req MigrateRequest) {
	fakePeer{tn.c, ""}.PutState(context.Background(), RecordPrefix+name, req.Fields())
}

// migration is the record's migration status; it fails the test when
// there is none or the request is still set.
func (tn *testNodes) migration(name string) MigrationStatus {
	tn.t.Helper()
	r := tn.record(name)
	if r.Migration == nil {
		tn.t.Fatalf("vm %s: no migration status", name)
	}
	if f := tn.c.get(RecordPrefix + name)[FieldMigrate]; f != "" {
		tn.t.Fatalf("vm %s: the request %s is still set after the migration ended (%+v)", name, f, *r.Migration)
	}
	return *r.Migration
}

// A migration request moves the VM from a to the chosen (or named)
// node: the destination starts an incoming QEMU, the source migrates,
// the claim moves to the destination at the next epoch in the
// switchover hook, the source's QEMU is killed, and the request is
// cleared with the final figures kept. Never two running copies.
func TestMigrate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		req      MigrateRequest
		wantNode string
	}{
		{"to b", MigrateRequest{ID: "m1", To: "b"}, "b"},
		{"to c post-copy", MigrateRequest{ID: "m1", To: "c", Postcopy: true}, "c"},
		{"picked by placement", MigrateRequest{ID: "m1"}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn, id := runningVM(t)
			tn.requestMigration("web1", tc.req)
			tn.round()
			if mg := tn.record("web1").Migration; mg == nil || mg.Phase != MigrationWaiting || mg.To != tc.wantNode {
				t.Fatalf("after the request: migration %+v, want waiting for %s", mg, tc.wantNode)
			}
			if n := len(tn.procs.live(id)); n != 2 {
				t.Fatalf("%d processes, want 2 (the source and the incoming QEMU)", n)
			}
			tn.round()
			tn.round()
			tn.wantRunning("web1", tc.wantNode, 2)
			mg := tn.migration("web1")
			want := MigrationStatus{ID: "m1", To: tc.wantNode, Phase: MigrationCompleted, Transferred: 3 << 20,
				Total: 256 << 20, DowntimeMS: 30, TotalMS: 2000, Postcopy: tc.req.Postcopy}
			if mg != want {
				t.Errorf("migration status\n got %+v\nwant %+v", mg, want)
			}
			// A request the source carried out is not repeated.
			tn.round()
			tn.wantRunning("web1", tc.wantNode, 2)
		})
	}
}

// Every failure leaves the VM running on the source (or, when the guest
// was lost, started afresh), with the reason in the migration status,
// the request cleared and no incoming QEMU left behind.
func TestMigrateFails(t *testing.T) {
	errQuorum := &client.ClaimError{Code: client.ClaimErrNoQuorum, Msg: "no majority answered"}
	for _, tc := range []struct {
		name      string
		req       MigrateRequest
		prepare   func(tn *testNodes)
		rounds    func(tn *testNodes)
		wantErr   string
		wantNode  string
		wantEpoch uint64
	}{
		{name: "to itself", req: MigrateRequest{ID: "m1", To: "a"}, wantErr: "already runs on node a", wantNode: "a", wantEpoch: 1},
		{name: "to an unknown node", req: MigrateRequest{ID: "m1", To: "zz"}, wantErr: "node zz cannot take vm web1", wantNode: "a", wantEpoch: 1},
		{name: "to a failed node", req: MigrateRequest{ID: "m1", To: "b"},
			prepare: func(tn *testNodes) { tn.c.setMember("b", client.StateFailed) },
			wantErr: "node b cannot take vm web1", wantNode: "a", wantEpoch: 1},
		{name: "not enough memory", req: MigrateRequest{ID: "m1", To: "c"},
			prepare: func(tn *testNodes) {
				tn.c.mu.Lock()
				tn.c.state[HostPrefix+"c"][FieldHostMemoryMiB] = "128"
				tn.c.mu.Unlock()
			},
			wantErr: "needs 256 MiB", wantNode: "a", wantEpoch: 1},
		{name: "destination daemon down", req: MigrateRequest{ID: "m1", To: "c"},
			rounds: func(tn *testNodes) {
				tn.round("a", "b")
				tn.now = tn.now.Add(migrateSetupTimeout + time.Second)
				tn.round("a", "b")
			},
			wantErr: "did not get ready", wantNode: "a", wantEpoch: 1},
		{name: "network", req: MigrateRequest{ID: "m1", To: "b"},
			prepare: func(tn *testNodes) { tn.procs.migrateFault = "network" },
			wantErr: "connection reset", wantNode: "a", wantEpoch: 1},
		{name: "claim not won", req: MigrateRequest{ID: "m1", To: "b"},
			rounds: func(tn *testNodes) {
				tn.round()
				tn.c.claimErr = errQuorum
				tn.round()
				tn.c.claimErr = nil
				tn.round()
			},
			wantErr: "claim vm/web1 at epoch 2 for node b", wantNode: "a", wantEpoch: 1},
		{name: "destination lost after the switchover", req: MigrateRequest{ID: "m1", To: "b"},
			prepare: func(tn *testNodes) { tn.procs.migrateFault = "after-switchover" },
			wantErr: "the vm runs on the source again", wantNode: "a", wantEpoch: 3},
		{name: "post-copy destination lost after the switchover", req: MigrateRequest{ID: "m1", To: "b", Postcopy: true},
			prepare: func(tn *testNodes) { tn.procs.migrateFault = "after-switchover" },
			rounds: func(tn *testNodes) {
				tn.round()
				tn.round()
				tn.round()
				tn.round() // placement starts it afresh
			},
			wantErr: "the guest was lost and is started again", wantNode: "a", wantEpoch: 3},
		{name: "withdrawn", req: MigrateRequest{ID: "m1", To: "b"},
			rounds: func(tn *testNodes) {
				tn.round()
				fakePeer{tn.c, ""}.PutState(context.Background(), RecordPrefix+"web1", map[string]string{FieldMigrate: ""})
				tn.round()
			},
			wantErr: "withdrawn", wantNode: "a", wantEpoch: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn, id := runningVM(t)
			if tc.prepare != nil {
				tc.prepare(tn)
			}
			tn.requestMigration("web1", tc.req)
			if tc.rounds != nil {
				tc.rounds(tn)
			} else {
				tn.round()
				tn.round()
				tn.round()
			}
			mg := tn.migration("web1")
			if mg.Phase != MigrationFailed || mg.ID != "m1" || !strings.Contains(mg.Error, tc.wantErr) {
				t.Errorf("migration status %+v, want failed with %q", mg, tc.wantErr)
			}
			tn.round()
			tn.wantRunning("web1", tc.wantNode, tc.wantEpoch)
			if n := len(tn.procs.live(id)); n != 1 {
				t.Errorf("%d processes left, want 1", n)
			}
		})
	}
}

// A fenced destination refuses; the source hears it at once.
func TestMigrateFencedDestination(t *testing.T) {
	tn, id := runningVM(t)
	tn.hs["b"].fence = client.FenceStatus{Fenced: true}
	tn.requestMigration("web1", MigrateRequest{ID: "m1", To: "b"})
	tn.round()
	tn.round()
	if mg := tn.migration("web1"); mg.Phase != MigrationFailed || !strings.Contains(mg.Error, "fenced") {
		t.Errorf("migration status %+v, want failed: fenced", mg)
	}
	tn.wantRunning("web1", "a", 1)
	if n := len(tn.procs.live(id)); n != 1 {
		t.Errorf("%d processes, want 1", n)
	}
}

func TestParseMigrateRequest(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    MigrateRequest
		ok, err bool
	}{
		{in: ""},
		{in: `{"id":"abc-1","to":"n2","postcopy":true}`, want: MigrateRequest{ID: "abc-1", To: "n2", Postcopy: true}, ok: true},
		{in: `{"id":""}`, err: true},
		{in: `{"id":"a b"}`, err: true},
		{in: `{`, err: true},
	} {
		got, ok, err := ParseMigrateRequest(tc.in)
		if got != tc.want || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("ParseMigrateRequest(%q) = %+v, %v, %v; want %+v, %v, error %v", tc.in, got, ok, err, tc.want, tc.ok, tc.err)
		}
	}
}

// Two daemons on fake peers migrate a real (TCG) QEMU over mutual TLS
// with the credentials of an in-process shoal peer cluster: the VM
// moves from a to b at the next epoch, a's QEMU is gone, b's runs. A
// destination whose certificate is from another cluster's CA fails the
// migration with the reason in the record, and the VM runs on at a.
func TestMigrateRealQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed (make deps installs qemu-system-x86)")
	}
	home := peertest.NewCluster(t, 2)
	for _, tc := range []struct {
		name    string
		foreign bool // b's certificate is from another cluster
	}{
		{"same cluster", false},
		{"destination of another cluster", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := home.Nodes[0], home.Nodes[1]
			if tc.foreign {
				b = peertest.NewCluster(t, 1).Nodes[0]
			}
			migrateRealQEMU(t, bin, a.ID(), a.Config.DataDir, b.ID(), b.Config.DataDir, !tc.foreign)
		})
	}
}

func migrateRealQEMU(t *testing.T, bin, a, aDir, b, bDir string, wantMoved bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := newFakeCluster(a, b)
	dir, err := os.MkdirTemp("", "mig") // QEMU's socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	hs := map[string]*Hypervisor{}
	for id, data := range map[string]string{a: aDir, b: bDir} {
		cfg := DefaultConfig()
		cfg.NodeID, cfg.QEMU, cfg.Accel, cfg.DataDir = id, bin, "tcg", data
		cfg.RuntimeDir = filepath.Join(dir, id[:8])
		cfg.Log = slog.New(slog.NewTextHandler(testWriter{t, id[:8]}, nil))
		cfg = cfg.withDefaults()
		h := newHypervisor(cfg, fakePeer{c, id}, &qemuRunner{cfg: cfg, log: cfg.Log}, time.Now)
		h.fence, h.fok = client.FenceStatus{}, true
		hs[id] = h
		t.Cleanup(func() {
			for vid, l := range h.vms {
				h.drop(context.Background(), vid, l, true)
			}
		})
	}
	vm := VMRecord{Name: "web1", ID: strings.Repeat("ab", 16), Desired: DesiredRunning, CPUs: 1, MemoryMiB: 64}
	fakePeer{c, ""}.PutState(ctx, RecordPrefix+"web1", vm.DesiredFields())
	round := func() {
		for _, id := range []string{a, b} {
			if err := hs[id].reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			hs[id].stopWG.Wait()
		}
	}
	// The VM starts on a (placement may pick either: make it a).
	c.mu.Lock()
	c.members[b] = client.StateFailed
	c.mu.Unlock()
	round()
	c.mu.Lock()
	c.members[b] = client.StateAlive
	c.mu.Unlock()
	srcPID := 0
	if l := hs[a].vms[vm.ID]; l != nil {
		srcPID = l.m.(*qemuMachine).PID()
	} else {
		t.Fatalf("vm not started on a: %v", c.get(RecordPrefix+"web1"))
	}
	fakePeer{c, ""}.PutState(ctx, RecordPrefix+"web1", MigrateRequest{ID: "real1", To: b}.Fields())
	var r VMRecord
	for {
		round()
		if r, err = ParseVMRecord(RecordPrefix+"web1", c.get(RecordPrefix+"web1")); err != nil {
			t.Fatal(err)
		}
		if l := hs[b].vms[vm.ID]; l != nil && l.in != nil {
			// The incoming QEMU takes the VM only over TLS.
			if creds, err := l.m.(*qemuMachine).MigrationTLSCreds(ctx); err != nil || creds == "" {
				t.Errorf("incoming qemu: tls-creds %q, %v; want set", creds, err)
			}
		}
		if mg := r.Migration; mg != nil && (mg.Phase == MigrationCompleted || mg.Phase == MigrationFailed) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no migration: %v", c.get(RecordPrefix+"web1"))
		case <-time.After(100 * time.Millisecond):
		}
	}
	mg := *r.Migration
	if !wantMoved {
		if mg.Phase != MigrationFailed || r.Node != a || !strings.Contains(mg.Error, "certificate") {
			t.Fatalf("after the migration: node %q, migration %+v; want failed on a with a certificate error", r.Node, mg)
		}
		t.Logf("refused: %s", mg.Error)
		round()
		if syscall.Kill(srcPID, 0) != nil {
			t.Fatalf("the source's QEMU pid %d is gone", srcPID)
		}
		if st, err := hs[a].vms[vm.ID].m.Status(ctx); err != nil || st != qemu.StatusRunning {
			t.Errorf("on a: %s, %v; want running", st, err)
		}
		if len(hs[b].vms) != 0 {
			t.Errorf("b kept its incoming qemu after the source gave up")
		}
		return
	}
	if mg.Phase != MigrationCompleted || r.Node != b || r.Epoch != 2 {
		t.Fatalf("after the migration: node %q epoch %d, migration %+v; want completed to b at epoch 2", r.Node, r.Epoch, mg)
	}
	t.Logf("migrated: QEMU total %d ms, downtime %d ms, %d bytes", mg.TotalMS, mg.DowntimeMS, mg.Transferred)
	round()
	if len(hs[a].vms) != 0 || syscall.Kill(srcPID, 0) == nil {
		t.Errorf("the source still has the vm (%d) or its QEMU pid %d is alive", len(hs[a].vms), srcPID)
	}
	l := hs[b].vms[vm.ID]
	if l == nil || l.in != nil {
		t.Fatalf("b does not run the vm as its own: %+v", l)
	}
	if st, err := l.m.Status(ctx); err != nil || st != qemu.StatusRunning {
		t.Errorf("on b: %s, %v; want running", st, err)
	}
}

// A request the CLI would not write is cleared, so it does not block
// the next one; the VM runs on.
func TestMigrateBadRequest(t *testing.T) {
	tn, _ := runningVM(t)
	fakePeer{tn.c, ""}.PutState(context.Background(), RecordPrefix+"web1", map[string]string{FieldMigrate: `{"id":"no spaces"}`})
	tn.round()
	if mg := tn.migration("web1"); mg.Phase != MigrationFailed || !strings.Contains(mg.Error, "is not 1-64") {
		t.Errorf("migration status %+v, want failed: bad id", mg)
	}
	tn.wantRunning("web1", "a", 1)
}

// A stop while the source waits for the destination ends the migration
// and stops the VM; a source node that fails while the destination
// waits makes the destination give up its incoming QEMU.
func TestMigrateInterrupted(t *testing.T) {
	t.Run("stopped", func(t *testing.T) {
		tn, id := runningVM(t)
		tn.requestMigration("web1", MigrateRequest{ID: "m1", To: "b"})
		tn.round()
		fakePeer{tn.c, ""}.PutState(context.Background(), RecordPrefix+"web1", map[string]string{FieldDesired: "stopped"})
		tn.round()
		tn.round()
		if mg := tn.migration("web1"); mg.Phase != MigrationFailed || !strings.Contains(mg.Error, "being stopped") {
			t.Errorf("migration status %+v, want failed: being stopped", mg)
		}
		if r := tn.record("web1"); r.Status != "stopped" || len(tn.procs.live(id)) != 0 {
			t.Errorf("after the stop: status %q, %d processes; want stopped, none", r.Status, len(tn.procs.live(id)))
		}
	})
	t.Run("source failed", func(t *testing.T) {
		tn, id := runningVM(t)
		tn.requestMigration("web1", MigrateRequest{ID: "m1", To: "b"})
		tn.round()
		src := tn.procs.running(id)[0]
		tn.c.setMember("a", client.StateFailed)
		src.end(qemu.StatusCrashed)
		tn.round("b", "c")
		if n := len(tn.procs.live(id)); n != 0 {
			t.Errorf("%d processes after the source failed, want 0 (the incoming QEMU killed)", n)
		}
		tn.now = tn.now.Add(DefaultFailoverWait + time.Second)
		tn.round("b", "c")
		tn.round("b", "c")
		tn.wantRunning("web1", "b", 2) // failed over as usual
	})
}

// claimLog is a node's peer that logs its claims and fails those of the
// resources starting with fail. takenBy[resource] wins the epoch this
// node asks for just before it (a take-over in between).
type claimLog struct {
	fakePeer
	claims  *[]string
	fail    string
	takenBy map[string]string
}

func (p claimLog) Claim(ctx context.Context, req client.ClaimRequest) (client.Claim, error) {
	*p.claims = append(*p.claims, fmt.Sprintf("%s@%d:%s", req.Resource, req.Epoch, req.Holder))
	if p.fail != "" && strings.HasPrefix(req.Resource, p.fail) {
		return client.Claim{}, &client.ClaimError{Code: client.ClaimErrNoQuorum, Msg: "no majority answered"}
	}
	if by := p.takenBy[req.Resource]; by != "" {
		fakePeer{p.c, by}.Claim(ctx, client.ClaimRequest{Resource: req.Resource, Epoch: req.Epoch})
	}
	return p.fakePeer.Claim(ctx, req)
}

// vsdVM is web1 running on a with two writable VSD disks, whose claims a
// holds (as its scribe would) at epochs 4 and 7, and a read-only image.
// Node a's claims are logged.
func vsdVM(t *testing.T, fail string) (*testNodes, string, *[]string) {
	tn, id := runningVM(t)
	fakePeer{tn.c, ""}.PutState(context.Background(), RecordPrefix+"web1",
		map[string]string{FieldDisks: `[{"vsd":"web1-0"},{"vsd":"web1-1"},{"vsd":"img","read_only":true}]`})
	tn.c.mu.Lock()
	tn.c.claims["vsd/web1-0"] = client.Claim{Resource: "vsd/web1-0", Epoch: 4, Holder: "a"}
	tn.c.claims["vsd/web1-1"] = client.Claim{Resource: "vsd/web1-1", Epoch: 7, Holder: "a"}
	tn.c.mu.Unlock()
	var claims []string
	tn.hs["a"].peer = claimLog{fakePeer: fakePeer{tn.c, "a"}, claims: &claims, fail: fail}
	return tn, id, &claims
}

func (tn *testNodes) claim(res string) client.Claim {
	tn.c.mu.Lock()
	defer tn.c.mu.Unlock()
	return tn.c.claims[res]
}

// A VM with writable VSD disks migrates: the destination's QEMU reaches
// them by their deferred export names (read-only images by their own);
// the switchover hook hands every writable disk's claim to the
// destination at its next epoch, then the VM's.
func TestMigrateWithVSDs(t *testing.T) {
	tn, id, claims := vsdVM(t, "")
	tn.requestMigration("web1", MigrateRequest{ID: "m1", To: "b"})
	tn.round()
	var exports []string
	for _, m := range tn.procs.live(id) {
		if m.node == "b" {
			for _, d := range m.spec.Disks {
				exports = append(exports, d.NBDExport)
			}
		}
	}
	if diff := cmp.Diff([]string{"web1-0@incoming", "web1-1@incoming", "img"}, exports); diff != "" {
		t.Errorf("the incoming qemu's exports (-want +got):\n%s", diff)
	}
	tn.round()
	tn.round()
	tn.wantRunning("web1", "b", 2)
	if mg := tn.migration("web1"); mg.Phase != MigrationCompleted {
		t.Fatalf("migration %+v, want completed", mg)
	}
	if diff := cmp.Diff([]string{"vsd/web1-0@5:b", "vsd/web1-1@8:b", "vm/web1@2:b"}, *claims); diff != "" {
		t.Errorf("the source's claims (-want +got):\n%s", diff)
	}
	for res, want := range map[string]client.Claim{
		"vsd/web1-0": {Resource: "vsd/web1-0", Epoch: 5, Holder: "b"},
		"vsd/web1-1": {Resource: "vsd/web1-1", Epoch: 8, Holder: "b"},
		"vsd/img":    {},
	} {
		if got := tn.claim(res); got != want {
			t.Errorf("claim %s = %+v, want %+v", res, got, want)
		}
	}
}

// A failed hand-over of a disk cancels the migration: the disks handed
// over already are claimed back for the source, the VM's claim never
// moved, and the VM runs on. A disk whose claim the source does not hold
// is not handed over at all. A destination lost after the switchover
// restarts the guest (its disks had moved).
func TestMigrateWithVSDsFails(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fail       string
		prepare    func(tn *testNodes)
		wantErr    string
		wantClaims []string
		wantEpoch  uint64
		wantVSD0   client.Claim
	}{
		{name: "second disk's claim not won", fail: "vsd/web1-1",
			wantErr:    "claim vsd/web1-1 at epoch 8 for node b",
			wantClaims: []string{"vsd/web1-0@5:b", "vsd/web1-1@8:b", "vsd/web1-0@6:"},
			wantEpoch:  1, wantVSD0: client.Claim{Resource: "vsd/web1-0", Epoch: 6, Holder: "a"}},
		{name: "vm claim not won", fail: "vm/",
			wantErr:    "at epoch 2 for node b",
			wantClaims: []string{"vsd/web1-0@5:b", "vsd/web1-1@8:b", "vm/web1@2:b", "vsd/web1-0@6:", "vsd/web1-1@9:"},
			wantEpoch:  1, wantVSD0: client.Claim{Resource: "vsd/web1-0", Epoch: 6, Holder: "a"}},
		{name: "disk not held here",
			prepare: func(tn *testNodes) {
				tn.c.mu.Lock()
				tn.c.claims["vsd/web1-1"] = client.Claim{Resource: "vsd/web1-1", Epoch: 7, Holder: "c"}
				tn.c.mu.Unlock()
			},
			wantErr:    "claim vsd/web1-1 is not this node's",
			wantClaims: nil, // found out before the vm paused
			wantEpoch:  1, wantVSD0: client.Claim{Resource: "vsd/web1-0", Epoch: 4, Holder: "a"}},
		{name: "disk taken over while memory moved",
			prepare: func(tn *testNodes) {
				p := tn.hs["a"].peer.(claimLog)
				p.takenBy = map[string]string{"vsd/web1-1": "c"}
				tn.hs["a"].peer = p
			},
			wantErr:    "claim vsd/web1-1 at epoch 8 for node b",
			wantClaims: []string{"vsd/web1-0@5:b", "vsd/web1-1@8:b", "vsd/web1-0@6:"},
			wantEpoch:  1, wantVSD0: client.Claim{Resource: "vsd/web1-0", Epoch: 6, Holder: "a"}},
		{name: "destination lost after the switchover",
			prepare:    func(tn *testNodes) { tn.procs.migrateFault = "after-switchover" },
			wantErr:    "had moved with it; the guest was lost and is started again",
			wantClaims: []string{"vsd/web1-0@5:b", "vsd/web1-1@8:b", "vm/web1@2:b"},
			wantEpoch:  3, wantVSD0: client.Claim{Resource: "vsd/web1-0", Epoch: 5, Holder: "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn, _, claims := vsdVM(t, tc.fail)
			if tc.prepare != nil {
				tc.prepare(tn)
			}
			tn.requestMigration("web1", MigrateRequest{ID: "m1", To: "b"})
			tn.round()
			tn.round()
			tn.round()
			mg := tn.migration("web1")
			if mg.Phase != MigrationFailed || !strings.Contains(mg.Error, tc.wantErr) {
				t.Errorf("migration status %+v, want failed with %q", mg, tc.wantErr)
			}
			tn.round()
			tn.round()
			tn.wantRunning("web1", "a", tc.wantEpoch)
			if diff := cmp.Diff(tc.wantClaims, (*claims)[:min(len(*claims), len(tc.wantClaims))], cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("the source's claims (-want +got):\n%s", diff)
			}
			if got := tn.claim("vsd/web1-0"); got != tc.wantVSD0 {
				t.Errorf("claim vsd/web1-0 = %+v, want %+v", got, tc.wantVSD0)
			}
		})
	}
}

// A node's migration credentials are its peer certificate and key and
// the cluster CA, in PEM; the source's name the destination. Without
// cluster credentials there is no migration.
func TestNodeMigrationTLS(t *testing.T) {
	nd := peertest.NewCluster(t, 1).Nodes[0]
	for _, server := range []bool{true, false} {
		mt, err := nodeMigrationTLS(nd.Config.DataDir, "0123abcd", server)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]string{true: "", false: "0123abcd"}[server]; mt.Hostname != want {
			t.Errorf("server %v: hostname %q, want %q", server, mt.Hostname, want)
		}
		pair, err := tls.X509KeyPair(mt.Cert, mt.Key)
		if err != nil {
			t.Fatalf("certificate and key do not match: %v", err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(mt.CACert) {
			t.Fatalf("CA is not PEM: %q", mt.CACert)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("node certificate does not verify against the CA: %v", err)
		}
		if leaf.Subject.CommonName != nd.ID() {
			t.Errorf("certificate names %q, want node %s", leaf.Subject.CommonName, nd.ID())
		}
	}
	for _, dir := range []string{"", t.TempDir()} {
		if _, err := nodeMigrationTLS(dir, "0123abcd", false); err == nil || !strings.Contains(err.Error(), "credentials") {
			t.Errorf("data dir %q: err %v, want no credentials", dir, err)
		}
	}
}
