package hypervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
	"github.com/shoal-hci/shoal/peer/client"
)

// AgentReportEvery is how often at most the agent_seen field is
// rewritten while the agent heartbeats.
const AgentReportEvery = 5 * time.Second

// restartBackoff is how long the daemon waits before it starts again a
// VM whose start failed or whose QEMU crashed.
const restartBackoff = 5 * time.Second

// failoverQuiet is how long after the daemon starts, and after this
// node's fence changes, it does not take over VMs from nodes it sees
// failed: its membership view may be stale (a node back from a partition
// still sees the majority failed until gossip catches up).
const failoverQuiet = 30 * time.Second

// claimCheckEvery is how often a running VM's claim is re-read from a
// majority (a node that missed a takeover learns it here at the latest).
const claimCheckEvery = 15 * time.Second

// Hypervisor is the daemon of one node: it reconciles the vm/<name>
// records with the QEMU processes on this node (see doc.go).
type Hypervisor struct {
	cfg  Config
	log  *slog.Logger
	peer peerAPI
	run  runner
	now  func() time.Time

	wake chan struct{}

	fmu   sync.Mutex
	fence client.FenceStatus
	fok   bool // fence known

	// Owned by the reconcile loop.
	vms         map[string]*localVM  // by VM ID
	retryAt     map[string]time.Time // by VM name: no start before
	failedSince map[string]time.Time // by node ID: first seen failed
	fenceSince  time.Time            // the fence's Since when last seen
	quietUntil  time.Time            // no failover before (failoverQuiet)
	// By VM name: the last migrate request carried out as the source,
	// and the last one an incoming QEMU was started for (migrate.go).
	migHandled    map[string]string
	incomingTried map[string]string
	// stopWG counts the goroutines of stops and migrations.
	stopWG sync.WaitGroup
}

// localVM is a VM whose process runs on this node.
type localVM struct {
	m        machine
	name     string
	epoch    uint64 // 0: re-attached, claim not read yet
	paused   bool   // paused by the fence
	pausedAt time.Time
	checked  time.Time // last majority read of the claim
	// stopping is closed when a stop started by the daemon has ended.
	stopping chan struct{}
	seenAt   time.Time     // last agent_seen written
	out      *outMigration // migrating away (migrate.go)
	in       *inMigration  // an incoming QEMU waiting for the VM (migrate.go)
}

// New checks cfg and returns a Hypervisor; nothing runs until Run.
func New(cfg Config) (*Hypervisor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	h := newHypervisor(cfg, client.New(cfg.PeerSocket), nil, time.Now)
	h.run = &qemuRunner{cfg: cfg, log: h.log}
	return h, nil
}

func newHypervisor(cfg Config, p peerAPI, r runner, now func() time.Time) *Hypervisor {
	return &Hypervisor{cfg: cfg, log: cfg.Log, peer: p, run: r, now: now,
		wake: make(chan struct{}, 1), vms: map[string]*localVM{},
		retryAt: map[string]time.Time{}, failedSince: map[string]time.Time{},
		migHandled: map[string]string{}, incomingTried: map[string]string{}}
}

// Run re-attaches to the VMs still running from RuntimeDir, then
// reconciles until ctx ends. It returns nil on cancellation; QEMU
// processes keep running after it returns.
func (h *Hypervisor) Run(ctx context.Context) error {
	if err := os.MkdirAll(h.cfg.RuntimeDir, 0o700); err != nil {
		return fmt.Errorf("hypervisor: create runtime dir: %w", err)
	}
	for _, m := range h.run.Reattach(ctx) {
		h.vms[m.Spec().ID] = &localVM{m: m, name: m.Spec().Name}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		h.stopWG.Wait()
		for _, l := range h.vms {
			l.m.Close()
		}
	}()
	wg.Add(2)
	go func() { defer wg.Done(); h.watchFence(ctx) }()
	go func() { defer wg.Done(); h.watchRecords(ctx) }()
	if h.cfg.ConsoleListen != "" {
		wg.Add(1)
		go func() { defer wg.Done(); h.serveConsoles(ctx) }()
	}
	if h.cfg.Ready != nil {
		h.cfg.Ready()
	}
	announced, lastErr := false, ""
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		if !announced {
			announced = h.announce(ctx) == nil
		}
		err := h.reconcile(ctx)
		switch {
		case err != nil && ctx.Err() == nil && err.Error() != lastErr:
			h.log.Warn("reconcile (retried every interval; logged again when the error changes)", "err", err)
			lastErr = err.Error()
		case err == nil:
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-h.wake:
		}
	}
}

func (h *Hypervisor) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// watchFence follows this node's fence and wakes the loop on changes.
func (h *Hypervisor) watchFence(ctx context.Context) {
	client.WatchFence(ctx, h.peer, time.Second, func(st client.FenceStatus) {
		h.fmu.Lock()
		h.fence, h.fok = st, true
		h.fmu.Unlock()
		h.log.Info("fence", "fenced", st.Fenced, "since", st.Since)
		h.poke()
	})
}

func (h *Hypervisor) fenceNow() (client.FenceStatus, bool) {
	h.fmu.Lock()
	defer h.fmu.Unlock()
	return h.fence, h.fok
}

// watchRecords wakes the loop whenever a vm/ record changes.
func (h *Hypervisor) watchRecords(ctx context.Context) {
	var rev uint64
	for ctx.Err() == nil {
		b, err := h.peer.WatchStateOnce(ctx, RecordPrefix, rev, 0)
		if err != nil {
			rev = 0
			sleep(ctx, time.Second)
			continue
		}
		if len(b.Events) > 0 && rev != 0 {
			h.poke()
		}
		rev = b.Rev
	}
}

// announce writes this node's capacity record.
func (h *Hypervisor) announce(ctx context.Context) error {
	f := map[string]string{FieldHostCPUs: strconv.Itoa(runtime.NumCPU()), FieldHostMemoryMiB: strconv.Itoa(memTotalMiB())}
	_, err := h.peer.PutState(ctx, HostPrefix+h.cfg.NodeID, f)
	return err
}

// memTotalMiB reads MemTotal from /proc/meminfo; 0 when unknown.
func memTotalMiB() int {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.Atoi(f[1])
			return kb / 1024
		}
	}
	return 0
}

// view is one snapshot of what the loop acts on.
type view struct {
	records []VMRecord
	boots   map[string]Boot              // by VM name
	raw     map[string]map[string]string // by VM name: the record's fields
	force   map[string]bool              // by VM name: stop_force
	members map[string]string            // node ID → member state
	roles   map[string]string
	hosts   map[string]Candidate
	fence   client.FenceStatus
	fenceOK bool
}

func (h *Hypervisor) read(ctx context.Context) (view, error) {
	v := view{boots: map[string]Boot{}, raw: map[string]map[string]string{}, force: map[string]bool{}, members: map[string]string{},
		roles: map[string]string{}, hosts: map[string]Candidate{}}
	list, err := h.peer.ListState(ctx, RecordPrefix)
	if err != nil {
		return v, fmt.Errorf("list vm records: %w", err)
	}
	for _, rec := range list.Records {
		fields := map[string]string{}
		for k, f := range rec.Fields {
			fields[k] = f.Value
		}
		r, err := ParseVMRecord(rec.Key, fields)
		if err == nil {
			var b Boot
			if b, err = ParseBoot(rec.Key, fields); err == nil {
				v.records = append(v.records, r)
				v.boots[r.Name] = b
				v.raw[r.Name] = fields
				v.force[r.Name] = fields[FieldStopForce] == "1"
				continue
			}
		}
		h.log.Debug("skipping a bad vm record", "key", rec.Key, "err", err)
	}
	members, err := h.peer.Nodes(ctx)
	if err != nil {
		return v, fmt.Errorf("list members: %w", err)
	}
	for _, m := range members {
		v.members[m.ID] = m.State
		v.roles[m.ID] = m.Roles
	}
	hosts, err := h.peer.ListState(ctx, HostPrefix)
	if err != nil {
		return v, fmt.Errorf("list hypervisors: %w", err)
	}
	for _, rec := range hosts.Records {
		id := strings.TrimPrefix(rec.Key, HostPrefix)
		mem, _ := strconv.Atoi(rec.Fields[FieldHostMemoryMiB].Value)
		cpus, _ := strconv.Atoi(rec.Fields[FieldHostCPUs].Value)
		v.hosts[id] = Candidate{ID: id, MemoryMiB: mem, CPUs: cpus}
	}
	v.fence, v.fenceOK = h.fenceNow()
	return v, nil
}

// alive reports whether a member state means the node still runs what
// it ran (suspect may be a hiccup; leaving still runs).
func alive(state string) bool {
	return state == client.StateAlive || state == client.StateSuspect || state == client.StateLeaving
}

func (h *Hypervisor) reconcile(ctx context.Context) error {
	v, err := h.read(ctx)
	if err != nil {
		return err
	}
	now := h.now()
	if v.fenceOK && (h.quietUntil.IsZero() || !v.fence.Since.Equal(h.fenceSince)) {
		h.fenceSince, h.quietUntil = v.fence.Since, now.Add(failoverQuiet)
		clear(h.failedSince)
	}
	for id, st := range v.members {
		if alive(st) {
			delete(h.failedSince, id)
		} else if _, ok := h.failedSince[id]; !ok {
			h.failedSince[id] = now
		}
	}
	byID := map[string]VMRecord{}
	for _, r := range v.records {
		byID[r.ID] = r
	}
	for _, id := range slices.Sorted(maps.Keys(h.vms)) {
		l := h.vms[id]
		r, ok := byID[id]
		if !ok {
			h.log.Info("vm record gone: killing its QEMU", "vm", l.name)
			h.drop(ctx, id, l, true)
			continue
		}
		h.tend(ctx, v, r, l)
	}
	for _, r := range v.records {
		if _, ok := h.vms[r.ID]; ok {
			continue
		}
		switch {
		case r.Desired == DesiredRunning && h.maybeIncoming(ctx, v, r):
		case r.Desired == DesiredRunning:
			h.maybeStart(ctx, v, r)
		case r.Node == h.cfg.NodeID && r.Status != string(statusStopped):
			h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldNode: "", FieldStatus: string(statusStopped), FieldStatusDetail: ""})
		}
	}
	return nil
}

// drop ends l: killed (kill) or already gone, and forgets it.
func (h *Hypervisor) drop(ctx context.Context, id string, l *localVM, kill bool) {
	if kill {
		if err := l.m.Kill(ctx); err != nil {
			h.log.Warn("kill vm", "vm", l.name, "err", err)
			return
		}
	}
	l.m.Close()
	delete(h.vms, id)
	h.run.Remove(id)
}

// tend keeps a VM running here in line with its record, the claim and
// the fence.
func (h *Hypervisor) tend(ctx context.Context, v view, r VMRecord, l *localVM) {
	self := h.cfg.NodeID
	// A stop the daemon started.
	if l.stopping != nil {
		select {
		case <-l.stopping:
			h.log.Info("vm stopped", "vm", r.Name)
			h.drop(ctx, r.ID, l, false)
			h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldNode: "", FieldStatus: string(statusStopped), FieldStatusDetail: "", FieldAgentSeen: "", FieldGuestIPs: ""})
		default:
		}
		return
	}
	if l.in != nil {
		h.tendIncoming(ctx, v, r, l)
		return
	}
	if l.out != nil && h.tendOutgoing(ctx, v, r, l) {
		return
	}
	// The process ended by itself.
	select {
	case <-l.m.Exited():
		st, _ := l.m.Status(ctx)
		h.log.Warn("qemu exited", "vm", r.Name, "status", st)
		h.drop(ctx, r.ID, l, false)
		detail := "qemu exited; see qemu.log in the VM's runtime dir"
		h.retryAt[r.Name] = h.now().Add(restartBackoff)
		h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldStatus: string(statusCrashed), FieldStatusDetail: detail})
		return
	default:
	}
	// Re-attached: is it still ours?
	if l.epoch == 0 || (!v.fence.Fenced && h.now().Sub(l.checked) > claimCheckEvery) {
		cv, err := h.peer.GetClaim(ctx, claimResource(r.Name))
		switch {
		case err != nil:
			h.log.Debug("read claim", "vm", r.Name, "err", err)
			if l.epoch == 0 {
				return
			}
		case cv.Holder != self || (l.epoch != 0 && cv.Epoch != l.epoch):
			h.log.Warn("vm claimed by another node: killing the copy here", "vm", r.Name, "holder", cv.Holder, "epoch", cv.Epoch, "ours", l.epoch)
			h.drop(ctx, r.ID, l, true)
			return
		default:
			l.epoch, l.checked = cv.Epoch, h.now()
		}
	}
	// Taken over at a higher epoch (seen in the record).
	if r.Epoch > l.epoch && r.Node != self {
		h.log.Warn("vm runs on another node at a higher epoch: killing the copy here", "vm", r.Name, "node", r.Node, "epoch", r.Epoch, "ours", l.epoch)
		h.drop(ctx, r.ID, l, true)
		return
	}
	if r.Desired == DesiredStopped {
		grace := h.cfg.StopGrace
		if v.force[r.Name] {
			grace = 0
		}
		h.log.Info("stopping vm", "vm", r.Name, "grace", grace)
		l.stopping = make(chan struct{})
		h.stopWG.Add(1)
		go func(m machine, done chan struct{}) {
			defer h.stopWG.Done()
			defer close(done)
			defer h.poke()
			if err := m.Stop(context.WithoutCancel(ctx), grace); err != nil {
				h.log.Warn("stop vm", "vm", r.Name, "err", err)
			}
		}(l.m, l.stopping)
		return
	}
	// Fencing.
	switch {
	case v.fence.Fenced && !l.paused:
		if err := l.m.Pause(ctx); err != nil {
			h.log.Warn("pause vm on fence", "vm", r.Name, "err", err)
		} else {
			h.log.Warn("node fenced: vm paused", "vm", r.Name)
			l.paused, l.pausedAt = true, h.now()
		}
	case !v.fence.Fenced && v.fenceOK && l.paused:
		cv, err := h.peer.GetClaim(ctx, claimResource(r.Name))
		if err != nil {
			h.log.Debug("read claim after the fence", "vm", r.Name, "err", err)
			return
		}
		if cv.Holder != self || cv.Epoch != l.epoch {
			h.log.Warn("fence lifted but the vm moved on: killing the copy here", "vm", r.Name, "holder", cv.Holder, "epoch", cv.Epoch)
			h.drop(ctx, r.ID, l, true)
			return
		}
		if err := l.m.Resume(ctx); err != nil {
			h.log.Warn("resume vm", "vm", r.Name, "err", err)
			return
		}
		h.log.Info("fence lifted, claim still ours: vm resumed", "vm", r.Name)
		l.paused = false
	}
	st, err := l.m.Status(ctx)
	if err != nil {
		h.log.Debug("vm status", "vm", r.Name, "err", err)
		return
	}
	if st == statusStopped {
		// The guest powered itself off: that is its user's wish.
		h.log.Info("guest powered off: vm stopped", "vm", r.Name)
		h.drop(ctx, r.ID, l, true)
		h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldDesired: string(DesiredStopped), FieldNode: "", FieldStatus: string(statusStopped),
			FieldStatusDetail: "the guest powered off", FieldAgentSeen: "", FieldGuestIPs: ""})
		return
	}
	if st == statusCrashed {
		// Guest panic or QEMU internal error: the process lives on, the
		// guest does not. Start it afresh (same claim) after the backoff.
		h.log.Warn("guest crashed: restarting it", "vm", r.Name)
		h.drop(ctx, r.ID, l, true)
		h.retryAt[r.Name] = h.now().Add(restartBackoff)
		h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldStatus: string(statusCrashed), FieldStatusDetail: "the guest crashed (panic or QEMU internal error); console.log in the VM's runtime dir"})
		return
	}
	if st == qemu.StatusRunning && !l.paused && l.out == nil {
		h.maybeMigrate(ctx, v, r, l)
	}
	f := map[string]string{FieldNode: self, FieldEpoch: strconv.FormatUint(l.epoch, 10), FieldStatus: string(st), FieldStatusDetail: ""}
	if l.paused {
		f[FieldStatusDetail] = "paused: this node is fenced"
	}
	a := l.m.Agent()
	if !a.LastHeartbeat.IsZero() && (a.LastHeartbeat.Sub(l.seenAt) >= AgentReportEvery) {
		f[FieldAgentSeen] = a.LastHeartbeat.UTC().Format(time.RFC3339Nano)
		f[FieldGuestBootID], f[FieldGuestUptimeMS] = a.BootID, strconv.FormatInt(a.Uptime.Milliseconds(), 10)
		l.seenAt = a.LastHeartbeat
	}
	ips := make([]string, 0, len(a.IPs))
	for _, ad := range a.IPs {
		ips = append(ips, ad.Interface+" "+ad.Prefix.String())
	}
	b, _ := json.Marshal(ips)
	f[FieldGuestIPs] = string(b)
	h.writeStatus(ctx, v.raw[r.Name], r.Name, f)
}

// writeStatus writes the fields of vm name whose values differ from
// those in cur, the record as last read. Comparing with the record, not
// with what this node wrote, repairs a field another node's stale write
// won (last writer wins per field).
func (h *Hypervisor) writeStatus(ctx context.Context, cur map[string]string, name string, f map[string]string) {
	out := map[string]string{}
	for k, val := range f {
		if cur[k] != val {
			out[k] = val
		}
	}
	if len(out) == 0 {
		return
	}
	if _, err := h.peer.PutState(ctx, RecordPrefix+name, out); err != nil {
		h.log.Warn("write vm status", "vm", name, "err", err)
		return
	}
	maps.Copy(cur, out)
}

func claimResource(name string) string { return RecordPrefix + name }

// maybeStart starts r here if it runs nowhere, this node is where it
// belongs, and this node wins its claim.
func (h *Hypervisor) maybeStart(ctx context.Context, v view, r VMRecord) {
	self := h.cfg.NodeID
	now := h.now()
	if now.Before(h.retryAt[r.Name]) || !v.fenceOK || v.fence.Fenced {
		return
	}
	// waited reports whether node has been failed for the failover wait.
	waited := func(node string) bool {
		since, ok := h.failedSince[node]
		if !ok && v.members[node] == "" {
			// Not a member at all (removed): treat as failed from now.
			h.failedSince[node], since, ok = now, now, true
		}
		return ok && now.Sub(since) >= h.cfg.FailoverWait && !now.Before(h.quietUntil)
	}
	var exclude string
	if r.Node != "" && r.Node != self && active(r.Status) {
		if alive(v.members[r.Node]) {
			return // it runs there
		}
		if !waited(r.Node) {
			return
		}
		exclude = r.Node
	}
	target := self
	if r.Node != self || !active(r.Status) {
		var err error
		if target, err = Place(r, candidates(v, exclude), v.records); err != nil {
			h.log.Debug("no placement", "vm", r.Name, "err", err)
			return
		}
	}
	if target != self {
		return
	}
	cv, err := h.peer.GetClaim(ctx, claimResource(r.Name))
	if err != nil {
		h.log.Debug("read claim", "vm", r.Name, "err", err)
		return
	}
	if cv.Holder != "" && cv.Holder != self {
		stoppedThere := cv.Epoch == r.Epoch && !active(r.Status)
		if alive(v.members[cv.Holder]) && !stoppedThere {
			return // the holder is starting it, or runs it
		}
		if !alive(v.members[cv.Holder]) && !waited(cv.Holder) {
			return
		}
	}
	// Claim exactly the epoch after the one read: a node that raced us
	// and won it makes this fail (taken) instead of superseding it.
	c := client.Claim{Resource: cv.Resource, Epoch: cv.Epoch, Holder: cv.Holder}
	if cv.Holder != self || cv.State != client.ClaimHeld {
		// Not ours already (ours: our QEMU crashed, or the daemon
		// restarted without finding it).
		c, err = h.peer.Claim(ctx, client.ClaimRequest{Resource: claimResource(r.Name), Epoch: cv.Epoch + 1})
		if err != nil {
			h.log.Info("vm claim not won", "vm", r.Name, "code", client.ClaimCode(err), "err", err)
			h.retryAt[r.Name] = now.Add(restartBackoff)
			return
		}
	}
	h.log.Info("vm claimed", "vm", r.Name, "epoch", c.Epoch)
	h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldNode: self, FieldEpoch: strconv.FormatUint(c.Epoch, 10),
		FieldStatus: string(statusStarting), FieldStatusDetail: "", FieldAgentSeen: "", FieldGuestIPs: ""})
	m, err := h.run.Start(ctx, h.spec(r, v.boots[r.Name]))
	if err != nil {
		h.log.Warn("start vm", "vm", r.Name, "err", err)
		h.retryAt[r.Name] = h.now().Add(restartBackoff)
		h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldStatus: string(statusCrashed), FieldStatusDetail: firstLine(err.Error())})
		return
	}
	h.log.Info("vm started", "vm", r.Name, "epoch", c.Epoch)
	l := &localVM{m: m, name: r.Name, epoch: c.Epoch, checked: h.now()}
	h.vms[r.ID] = l
	r.Node, r.Epoch = self, c.Epoch
	h.tend(ctx, v, r, l)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
