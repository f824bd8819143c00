package hypervisor

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/internal/agentlink"
	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
	"github.com/shoal-hci/shoal/peer/client"
)

// fakeCluster is shoal peer as every node of a test cluster sees it: one
// state, one claim register per resource, member states.
type fakeCluster struct {
	mu      sync.Mutex
	state   map[string]map[string]string
	claims  map[string]client.Claim
	members map[string]string // ID → state
	// claimErr, if set, fails every Claim (a lost majority).
	claimErr error
}

func newFakeCluster(nodes ...string) *fakeCluster {
	f := &fakeCluster{state: map[string]map[string]string{}, claims: map[string]client.Claim{}, members: map[string]string{}}
	for _, n := range nodes {
		f.members[n] = client.StateAlive
		f.state[HostPrefix+n] = map[string]string{FieldHostMemoryMiB: "4096", FieldHostCPUs: "4"}
	}
	return f
}

func (f *fakeCluster) get(key string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.state[key])
}

func (f *fakeCluster) setMember(id, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members[id] = state
}

// fakePeer is one node's view of a fakeCluster.
type fakePeer struct {
	c    *fakeCluster
	self string
}

func (p fakePeer) ListState(_ context.Context, prefix string) (client.StateList, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	var l client.StateList
	for k, fields := range p.c.state {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		r := client.StateRecord{Key: k, Fields: map[string]client.StateField{}}
		for n, v := range fields {
			r.Fields[n] = client.StateField{Kind: client.KindRegister, Value: v}
		}
		l.Records = append(l.Records, r)
	}
	return l, nil
}

func (p fakePeer) PutState(_ context.Context, key string, fields map[string]string) (client.StateWrite, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	if p.c.state[key] == nil {
		p.c.state[key] = map[string]string{}
	}
	for k, v := range fields {
		if v == "" {
			delete(p.c.state[key], k)
		} else {
			p.c.state[key][k] = v
		}
	}
	return client.StateWrite{}, nil
}

func (p fakePeer) WatchStateOnce(ctx context.Context, _ string, _ uint64, _ time.Duration) (client.StateWatchBatch, error) {
	<-ctx.Done()
	return client.StateWatchBatch{}, ctx.Err()
}

func (p fakePeer) Nodes(context.Context) ([]client.Member, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	var ms []client.Member
	for id, st := range p.c.members {
		ms = append(ms, client.Member{ID: id, State: st, Gossip: "127.0.0.1:7946"})
	}
	return ms, nil
}

func (p fakePeer) Claim(_ context.Context, req client.ClaimRequest) (client.Claim, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	cur := p.c.claims[req.Resource]
	if p.c.claimErr != nil {
		return client.Claim{}, p.c.claimErr
	}
	switch {
	case req.Epoch == cur.Epoch:
		return client.Claim{}, &client.ClaimError{Status: http.StatusConflict, Code: client.ClaimErrTaken, Msg: "taken", Claim: &cur}
	case req.Epoch < cur.Epoch:
		return client.Claim{}, &client.ClaimError{Status: http.StatusConflict, Code: client.ClaimErrSuperseded, Msg: "superseded"}
	}
	c := client.Claim{Resource: req.Resource, Epoch: req.Epoch, Holder: cmp.Or(req.Holder, p.self)}
	p.c.claims[req.Resource] = c
	return c, nil
}

func (p fakePeer) GetClaim(_ context.Context, resource string) (client.ClaimView, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	c, ok := p.c.claims[resource]
	if !ok {
		return client.ClaimView{Resource: resource, State: client.ClaimNone, Confirmed: true}, nil
	}
	return client.ClaimView{Resource: resource, Epoch: c.Epoch, Holder: c.Holder, State: client.ClaimHeld, Confirmed: true}, nil
}

func (p fakePeer) Fence(context.Context) (client.FenceStatus, error) {
	return client.FenceStatus{}, nil
}

func (p fakePeer) WaitFence(ctx context.Context, _ client.FenceStatus) (client.FenceStatus, error) {
	<-ctx.Done()
	return client.FenceStatus{}, ctx.Err()
}

// fakeMachine is a VM process.
type fakeMachine struct {
	spec  qemu.Spec
	node  string
	procs *procs

	mu     sync.Mutex
	status qemu.Status
	exited chan struct{}
	agent  agentlink.Status
}

func (m *fakeMachine) Spec() qemu.Spec { return m.spec }
func (m *fakeMachine) Status(context.Context) (qemu.Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status, nil
}
func (m *fakeMachine) set(s qemu.Status)            { m.mu.Lock(); m.status = s; m.mu.Unlock() }
func (m *fakeMachine) Pause(context.Context) error  { m.set(qemu.StatusPaused); return nil }
func (m *fakeMachine) Resume(context.Context) error { m.set(qemu.StatusRunning); return nil }
func (m *fakeMachine) Stop(context.Context, time.Duration) error {
	m.end(qemu.StatusStopped)
	return nil
}
func (m *fakeMachine) Kill(context.Context) error { m.end(qemu.StatusStopped); return nil }
func (m *fakeMachine) end(s qemu.Status) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status = s
	select {
	case <-m.exited:
	default:
		close(m.exited)
	}
}
func (m *fakeMachine) Exited() <-chan struct{} { return m.exited }
func (m *fakeMachine) Agent() agentlink.Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.agent
}
func (m *fakeMachine) Close() error { return nil }

// procs counts the live fake processes of every node, like a process
// table: the test asserts a VM never has two.
type procs struct {
	mu  sync.Mutex
	all []*fakeMachine
	// migrateFault makes the next fake migration fail (migrate_test.go).
	migrateFault string
	// twice counts the moments a fake migration saw two running copies.
	twice int
}

func (p *procs) live(id string) []*fakeMachine {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*fakeMachine
	for _, m := range p.all {
		select {
		case <-m.exited:
		default:
			if m.spec.ID == id {
				out = append(out, m)
			}
		}
	}
	return out
}

type fakeRunner struct {
	node  string
	procs *procs
	now   func() time.Time
}

func (r fakeRunner) Start(_ context.Context, spec qemu.Spec) (machine, error) {
	m := &fakeMachine{spec: spec, node: r.node, procs: r.procs, status: qemu.StatusRunning, exited: make(chan struct{}),
		agent: agentlink.Status{Connected: true, LastHeartbeat: r.now(), Seq: 1}}
	r.procs.mu.Lock()
	r.procs.all = append(r.procs.all, m)
	r.procs.mu.Unlock()
	return m, nil
}
func (r fakeRunner) Reattach(context.Context) []machine { return nil }
func (r fakeRunner) Remove(string)                      {}

// testNodes is a cluster of hypervisors on fakes, with one clock.
type testNodes struct {
	t     *testing.T
	c     *fakeCluster
	procs *procs
	hs    map[string]*Hypervisor
	now   time.Time
}

func newTestNodes(t *testing.T, ids ...string) *testNodes {
	tn := &testNodes{t: t, c: newFakeCluster(ids...), procs: &procs{}, hs: map[string]*Hypervisor{},
		now: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return tn.now }
	for _, id := range ids {
		cfg := DefaultConfig()
		cfg.NodeID = id
		cfg.RuntimeDir = "/nonexistent"
		cfg.Log = slog.New(slog.NewTextHandler(testWriter{t, id}, nil))
		h := newHypervisor(cfg.withDefaults(), fakePeer{tn.c, id}, fakeRunner{id, tn.procs, clock}, clock)
		h.fence, h.fok = client.FenceStatus{}, true
		h.quietUntil = tn.now // as if started long ago
		tn.hs[id] = h
	}
	return tn
}

type testWriter struct {
	t    *testing.T
	node string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.node, strings.TrimSpace(string(p)))
	return len(p), nil
}

// round reconciles every listed node (all when none) once, in order,
// waits for the stops they started, and checks no VM runs twice.
func (tn *testNodes) round(ids ...string) {
	tn.t.Helper()
	if len(ids) == 0 {
		ids = []string{"a", "b", "c"}
	}
	for _, id := range ids {
		h := tn.hs[id]
		if err := h.reconcile(context.Background()); err != nil {
			tn.t.Fatalf("%s: reconcile: %v", id, err)
		}
		h.stopWG.Wait()
	}
	for _, rec := range tn.c.state {
		if id := rec[FieldID]; id != "" {
			if n := len(tn.procs.running(id)); n > 1 || tn.procs.twice > 0 {
				tn.t.Fatalf("vm %s runs %d times (during a migration: %d times twice)", id, n, tn.procs.twice)
			}
		}
	}
}

func (tn *testNodes) createVM(name string) string {
	id := fmt.Sprintf("%032x", len(tn.c.state))
	r := VMRecord{Name: name, ID: id, Desired: DesiredRunning, CPUs: 1, MemoryMiB: 256}
	fakePeer{tn.c, ""}.PutState(context.Background(), RecordPrefix+name, r.DesiredFields())
	return id
}

func (tn *testNodes) record(name string) VMRecord {
	tn.t.Helper()
	r, err := ParseVMRecord(RecordPrefix+name, tn.c.get(RecordPrefix+name))
	if err != nil {
		tn.t.Fatal(err)
	}
	return r
}

func (tn *testNodes) wantRunning(name, node string, epoch uint64) {
	tn.t.Helper()
	r := tn.record(name)
	live := tn.procs.live(r.ID)
	if r.Node != node || r.Epoch != epoch || r.Status != "running" || len(live) != 1 || live[0].node != node {
		tn.t.Fatalf("vm %s: node %q epoch %d status %q, %d processes; want running on %s at epoch %d", name, r.Node, r.Epoch, r.Status, len(live), node, epoch)
	}
}

// runningVM is a cluster of nodes a, b and c where vm web1 runs on a at
// epoch 1; it returns the VM's ID.
func runningVM(t *testing.T) (*testNodes, string) {
	t.Helper()
	tn := newTestNodes(t, "a", "b", "c")
	id := tn.createVM("web1")
	tn.round()
	tn.wantRunning("web1", "a", 1)
	return tn, id
}

// A new VM is placed on one node (the lowest ID on an empty cluster),
// which wins the claim, starts it and reports it with the agent's
// heartbeat; the others leave it alone.
func TestReconcilePlacesOnce(t *testing.T) {
	tn := newTestNodes(t, "a", "b", "c")
	tn.createVM("web1")
	tn.round("c", "b", "a", "c", "b", "a")
	tn.wantRunning("web1", "a", 1)
	if tn.c.get(RecordPrefix + "web1")[FieldAgentSeen] == "" {
		t.Error("agent_seen not written")
	}
}

// desired=stopped stops the VM and clears node; desired=running again
// starts it where placement says, here a again, which still holds the
// claim (so the epoch stays).
func TestReconcileStopStart(t *testing.T) {
	tn, _ := runningVM(t)
	fakePeer{tn.c, ""}.PutState(context.Background(), RecordPrefix+"web1", map[string]string{FieldDesired: "stopped"})
	tn.round()
	tn.round()
	r := tn.record("web1")
	if r.Status != "stopped" || r.Node != "" || len(tn.procs.live(r.ID)) != 0 {
		t.Fatalf("after stop: status %q node %q, %d processes", r.Status, r.Node, len(tn.procs.live(r.ID)))
	}
	fakePeer{tn.c, ""}.PutState(context.Background(), RecordPrefix+"web1", map[string]string{FieldDesired: "running"})
	tn.round()
	tn.wantRunning("web1", "a", 1)

	// Stopped again, and placed on b this time (a is busy): b claims the
	// next epoch.
	fakePeer{tn.c, ""}.PutState(context.Background(), RecordPrefix+"web1", map[string]string{FieldDesired: "stopped"})
	tn.round()
	tn.round()
	tn.c.mu.Lock()
	tn.c.state[HostPrefix+"a"][FieldHostMemoryMiB] = "128"
	tn.c.mu.Unlock()
	fakePeer{tn.c, ""}.PutState(context.Background(), RecordPrefix+"web1", map[string]string{FieldDesired: "running"})
	tn.round()
	tn.wantRunning("web1", "b", 2)
}

// A fenced node pauses its VMs; unfenced with the claim still its own it
// resumes them; if the claim moved meanwhile it kills its copy.
func TestReconcileFence(t *testing.T) {
	tn, id := runningVM(t)
	a := tn.hs["a"]
	a.fence = client.FenceStatus{Fenced: true}
	tn.round("a")
	if r := tn.record("web1"); r.Status != "paused" {
		t.Fatalf("fenced: status %q, want paused", r.Status)
	}
	a.fence = client.FenceStatus{}
	tn.round("a")
	tn.wantRunning("web1", "a", 1)

	a.fence = client.FenceStatus{Fenced: true}
	tn.round("a")
	fakePeer{tn.c, "b"}.Claim(context.Background(), client.ClaimRequest{Resource: "vm/web1", Epoch: 2})
	a.fence = client.FenceStatus{}
	tn.round("a")
	if n := len(tn.procs.live(id)); n != 0 {
		t.Fatalf("claim moved while fenced: %d processes left on a, want 0", n)
	}
}

// When the VM's node fails, survivors wait the failover time, then one
// of them claims the next epoch and runs it; the old node, back, does
// not run it again.
func TestReconcileFailover(t *testing.T) {
	tn, id := runningVM(t)
	// Node a loses power: its process is gone with it.
	tn.procs.live(id)[0].end(qemu.StatusCrashed)
	tn.c.setMember("a", client.StateFailed)
	tn.round("b", "c")
	if r := tn.record("web1"); r.Epoch != 1 {
		t.Fatalf("claimed before the failover wait: epoch %d", r.Epoch)
	}
	tn.now = tn.now.Add(DefaultFailoverWait - time.Second)
	tn.round("b", "c")
	if r := tn.record("web1"); r.Epoch != 1 {
		t.Fatalf("claimed before the failover wait: epoch %d", r.Epoch)
	}
	tn.now = tn.now.Add(2 * time.Second)
	tn.round("c", "b", "c", "b")
	tn.wantRunning("web1", "b", 2)

	// a comes back with a fresh daemon: the VM stays on b.
	tn.hs["a"].vms = map[string]*localVM{}
	tn.c.setMember("a", client.StateAlive)
	tn.round()
	tn.round()
	tn.wantRunning("web1", "b", 2)
}

// A node still running a VM that another node claimed at a higher epoch
// kills its copy; a VM whose record is removed is killed.
func TestReconcileSupersededAndRemoved(t *testing.T) {
	tn := newTestNodes(t, "a", "b", "c")
	id := tn.createVM("web1")
	tn.round()
	fakePeer{tn.c, "b"}.PutState(context.Background(), RecordPrefix+"web1", map[string]string{FieldNode: "b", FieldEpoch: strconv.Itoa(2)})
	tn.round("a")
	if n := len(tn.procs.live(id)); n != 0 {
		t.Fatalf("superseded: %d processes on a, want 0", n)
	}
	id2 := tn.createVM("web2")
	tn.round()
	if n := len(tn.procs.live(id2)); n != 1 {
		t.Fatalf("web2: %d processes, want 1", n)
	}
	tn.c.mu.Lock()
	delete(tn.c.state, RecordPrefix+"web2")
	tn.c.mu.Unlock()
	tn.round()
	if n := len(tn.procs.live(id2)); n != 0 {
		t.Fatalf("web2 removed: %d processes, want 0", n)
	}
}

// A crashed guest (or a QEMU that died) is started again on the same
// node, under the same claim, after the backoff.
func TestReconcileRestartsCrashed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		crash func(*fakeMachine)
	}{
		{"guest panic", func(m *fakeMachine) { m.set(qemu.StatusCrashed) }},
		{"qemu died", func(m *fakeMachine) { m.end(qemu.StatusCrashed) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn, id := runningVM(t)
			tc.crash(tn.procs.live(id)[0])
			tn.round()
			if r := tn.record("web1"); r.Status != "crashed" || r.Node != "a" || len(tn.procs.live(id)) != 0 {
				t.Fatalf("after the crash: status %q on %q, %d processes; want crashed on a, none", r.Status, r.Node, len(tn.procs.live(id)))
			}
			tn.now = tn.now.Add(restartBackoff)
			tn.round()
			tn.wantRunning("web1", "a", 1)
		})
	}
}

// A node back from a partition (its fence changed) does not fail over
// VMs from nodes it still sees failed until failoverQuiet has passed:
// its membership view may be stale.
func TestReconcileQuietAfterFence(t *testing.T) {
	tn, id := runningVM(t)
	b := tn.hs["b"]
	b.fence = client.FenceStatus{Fenced: true, Since: tn.now}
	tn.round("b")
	tn.now = tn.now.Add(time.Minute)
	b.fence = client.FenceStatus{Since: tn.now}
	tn.c.setMember("a", client.StateFailed) // b's stale view; a runs web1
	tn.round("b")
	tn.now = tn.now.Add(DefaultFailoverWait + time.Second)
	tn.round("b")
	tn.wantRunning("web1", "a", 1)
	tn.procs.live(id)[0].end(qemu.StatusCrashed) // a really fails
	tn.now = tn.now.Add(failoverQuiet)
	tn.round("b")
	tn.wantRunning("web1", "b", 2)
}
