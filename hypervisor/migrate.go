package hypervisor

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
	"github.com/shoal-hci/shoal/peer"
	"github.com/shoal-hci/shoal/peer/client"
)

// MigrateRequest is what `shoal vm migrate` writes into a VM record's
// migrate field. The source node carries it out and clears the field.
type MigrateRequest struct {
	// ID names this request (1-64 of a-z A-Z 0-9 -); progress and the
	// destination's answer carry it, so stale fields are never mistaken
	// for current ones.
	ID string `json:"id"`
	// To is the destination node ID; "": the source picks one with Place.
	To string `json:"to,omitempty"`
	// Postcopy switches to post-copy once the first pass is under way.
	Postcopy bool `json:"postcopy,omitempty"`
}

// MigrateIncoming is the destination's answer in migrate_incoming: the
// URI its QEMU listens on, or why it cannot take the VM.
type MigrateIncoming struct {
	ID    string `json:"id"`
	URI   string `json:"uri,omitempty"`
	Error string `json:"error,omitempty"`
}

// Phases of MigrationStatus besides QEMU's own migration statuses
// (setup, active, postcopy-active, pre-switchover, device).
const (
	MigrationWaiting   = "waiting"   // for the destination's QEMU to listen
	MigrationCompleted = "completed" // the VM runs on To
	MigrationFailed    = "failed"    // see Error; the VM runs on the source
)

// Timing of a migration.
const (
	// migrateSetupTimeout bounds the wait for the destination to start
	// its incoming QEMU and answer.
	migrateSetupTimeout = 60 * time.Second
	// migrateTimeout bounds a whole migration once memory moves.
	migrateTimeout = 10 * time.Minute
	// incomingTimeout is how long a destination keeps an incoming QEMU
	// that has not received the VM.
	incomingTimeout = migrateSetupTimeout + migrateTimeout
	// migrateReportEvery is how often at most progress is written while
	// QEMU's migration status stays the same.
	migrateReportEvery = time.Second
)

var migrateIDPattern = regexp.MustCompile(`^[a-zA-Z0-9-]{1,64}$`)

// ParseMigrateRequest decodes a migrate field; "" is no request.
func ParseMigrateRequest(v string) (MigrateRequest, bool, error) {
	if v == "" {
		return MigrateRequest{}, false, nil
	}
	var req MigrateRequest
	if err := json.Unmarshal([]byte(v), &req); err != nil {
		return MigrateRequest{}, false, fmt.Errorf("%w: migrate: %v", ErrBadRecord, err)
	}
	if !migrateIDPattern.MatchString(req.ID) {
		return MigrateRequest{}, false, fmt.Errorf("%w: migrate: id %q is not 1-64 of letters, digits and '-'", ErrBadRecord, req.ID)
	}
	return req, true, nil
}

// Fields encodes req as the record's migrate field.
func (req MigrateRequest) Fields() map[string]string {
	return map[string]string{FieldMigrate: mustJSON(req)}
}

func parseIncoming(v string) MigrateIncoming {
	var in MigrateIncoming
	if v != "" {
		json.Unmarshal([]byte(v), &in) // a bad answer matches no request
	}
	return in
}

// outMigration is a migration away from this node. The loop owns it;
// once done is set, the migration goroutine owns epoch, last, info and
// err until it closes done.
type outMigration struct {
	req   MigrateRequest
	to    string
	since time.Time

	done  chan struct{} // nil: waiting for the destination
	epoch uint64        // the claim epoch won for the destination
	last  qemu.MigrationInfo
	info  qemu.MigrationInfo
	err   error
}

func (o *outMigration) status(mi qemu.MigrationInfo, phase string) MigrationStatus {
	return MigrationStatus{ID: o.req.ID, To: o.to, Phase: phase, Transferred: mi.Transferred, Remaining: mi.Remaining,
		Total: mi.RAMTotal, DowntimeMS: mi.Downtime.Milliseconds(), TotalMS: mi.Total.Milliseconds(), Postcopy: mi.Postcopy}
}

// inMigration is an incoming QEMU on the destination, waiting for the VM.
type inMigration struct {
	id       string
	source   string
	postcopy bool
	since    time.Time
}

// nodeMigrationTLS is this node's credentials, from shoal peer's data dir,
// for a migration with node other (as the destination when server, else
// as the source): the node's certificate and key and the cluster CA.
// Both QEMUs verify the other's certificate against the CA; the source
// also checks that the destination's certificate names other, and the
// destination that the source's does (node certificates carry the node
// ID as their common name). The CA cannot
// know about revocations, so a removed node is refused here.
func nodeMigrationTLS(dataDir, other string, server bool) (*qemu.MigrationTLS, error) {
	fail := func(err error) (*qemu.MigrationTLS, error) {
		return nil, fmt.Errorf("migration over mutual tls needs this node's cluster credentials in %s: %w", dataDir, err)
	}
	if dataDir == "" {
		return fail(errors.New("no data dir configured"))
	}
	nt, err := peer.LoadNodeTLS(dataDir)
	if err != nil {
		return fail(err)
	}
	if nt.Revoked(other) {
		return nil, fmt.Errorf("node %s was removed from the cluster: no migration with it", other)
	}
	key, err := x509.MarshalPKCS8PrivateKey(nt.Cert.PrivateKey)
	if err != nil {
		return fail(fmt.Errorf("node key: %w", err))
	}
	t := &qemu.MigrationTLS{CACert: nt.CACertPEM(),
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: nt.Cert.Leaf.Raw}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})}
	if server {
		t.Peer = other
	} else {
		t.Hostname = other
	}
	return t, nil
}

// tlsHint explains a migration QEMU failed in its TLS handshake.
func tlsHint(err error, to string) string {
	msg := firstLine(err.Error())
	if l := strings.ToLower(msg); strings.Contains(l, "certificate") || strings.Contains(l, "tls") {
		msg += fmt.Sprintf(" (migrations run over mutual TLS with the cluster's node certificates: node %s must be a member of this cluster with a certificate from its CA)", to)
	}
	return msg
}

// candidates are the nodes placement may pick, without exclude.
func candidates(v view, exclude string) []Candidate {
	var cands []Candidate
	for id, c := range v.hosts {
		st := v.members[id]
		if id == exclude || !alive(st) || st == client.StateLeaving || roleWitness(v.roles[id]) {
			continue
		}
		cands = append(cands, c)
	}
	return cands
}

func roleWitness(roles string) bool { return strings.Contains(roles, "witness") }

// incomingSuffix makes scribe's deferred export of a VSD (scribe's
// IncomingSuffix; hypervisor does not import scribe): NAME@incoming
// answers the destination QEMU's handshake at once and opens the VSD for
// writing only once its claim names the destination (the source's
// switchover hook claims it), so both QEMUs can have it attached.
const incomingSuffix = "@incoming"

// writableVSDs are the VSDs r writes: their claims move with the VM.
func writableVSDs(r VMRecord) []string {
	var rw []string
	for _, d := range r.Disks {
		if !d.ReadOnly {
			rw = append(rw, d.VSD)
		}
	}
	return rw
}

// vsdClaim is the claim scribe holds while it serves VSD name for
// writing (scribe.ClaimResource).
func vsdClaim(name string) string { return "vsd/" + name }

// incomingSpec is s for the destination's incoming QEMU: writable VSD
// disks are reached by their deferred export names.
func incomingSpec(s qemu.Spec) qemu.Spec {
	disks := make([]qemu.Disk, len(s.Disks))
	for i, d := range s.Disks {
		if !d.ReadOnly && d.NBDExport != "" {
			d.NBDExport += incomingSuffix
		}
		disks[i] = d
	}
	s.Disks = disks
	return s
}

// migrationTarget is the destination of req for r, which runs here.
func (h *Hypervisor) migrationTarget(v view, r VMRecord, req MigrateRequest) (string, error) {
	self := h.cfg.NodeID
	cands := candidates(v, self)
	if req.To == "" {
		return Place(r, cands, v.records)
	}
	if req.To == self {
		return "", fmt.Errorf("vm %s already runs on node %s", r.Name, self)
	}
	for _, c := range cands {
		if c.ID == req.To {
			return Place(r, []Candidate{c}, v.records)
		}
	}
	return "", fmt.Errorf("node %s cannot take vm %s: it is not an alive member running a hypervisor (member state %q)", req.To, r.Name, v.members[req.To])
}

// maybeMigrate starts carrying out a migration request for r, which
// runs here unpaused: it names the destination in the record and waits
// for the destination's answer (tendOutgoing).
func (h *Hypervisor) maybeMigrate(ctx context.Context, v view, r VMRecord, l *localVM) {
	req, ok, err := ParseMigrateRequest(v.raw[r.Name][FieldMigrate])
	if err != nil {
		// Not from `shoal vm migrate`: clear it, or it blocks the next.
		h.endOutgoing(ctx, v, r, &outMigration{}, MigrationStatus{Phase: MigrationFailed, Error: err.Error()}, nil)
		return
	}
	if !ok || h.migHandled[r.Name] == req.ID {
		return
	}
	o := &outMigration{req: req, to: req.To, since: h.now()}
	to, err := h.migrationTarget(v, r, req)
	if err != nil {
		h.endOutgoing(ctx, v, r, o, MigrationStatus{ID: req.ID, To: req.To, Phase: MigrationFailed, Error: err.Error()}, nil)
		return
	}
	o.to = to
	l.out = o
	h.log.Info("migrating vm: waiting for the destination", "vm", r.Name, "to", to, "postcopy", req.Postcopy, "request", req.ID)
	h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldMigration: mustJSON(MigrationStatus{ID: req.ID, To: to, Phase: MigrationWaiting, Postcopy: req.Postcopy})})
}

// endOutgoing records the end of a migration request on the source:
// the final status, more status fields, and the request cleared.
func (h *Hypervisor) endOutgoing(ctx context.Context, v view, r VMRecord, o *outMigration, st MigrationStatus, more map[string]string) {
	h.migHandled[r.Name] = o.req.ID
	if st.Phase == MigrationFailed {
		h.log.Warn("migration failed", "vm", r.Name, "to", st.To, "err", st.Error)
	}
	f := map[string]string{FieldMigrate: "", FieldMigration: mustJSON(st)}
	maps.Copy(f, more)
	h.writeStatus(ctx, v.raw[r.Name], r.Name, f)
}

// tendOutgoing drives the migration of l away from this node. It
// reports whether it dealt with l this pass (tend must not go on).
func (h *Hypervisor) tendOutgoing(ctx context.Context, v view, r VMRecord, l *localVM) bool {
	o := l.out
	if o.done != nil {
		select {
		case <-o.done:
			l.out = nil
			h.finishOutgoing(ctx, v, r, l, o)
		default: // QEMU and the migration goroutine have it
		}
		return true
	}
	fail := func(why string) bool {
		l.out = nil
		h.endOutgoing(ctx, v, r, o, MigrationStatus{ID: o.req.ID, To: o.to, Phase: MigrationFailed, Error: why}, nil)
		return false // tend goes on with the VM as it is
	}
	req, ok, _ := ParseMigrateRequest(v.raw[r.Name][FieldMigrate])
	in := parseIncoming(v.raw[r.Name][FieldMigrateIncoming])
	select {
	case <-l.m.Exited():
		return fail("qemu exited before the migration began")
	default:
	}
	switch {
	case !ok || req.ID != o.req.ID:
		return fail("the request was withdrawn")
	case r.Desired == DesiredStopped:
		return fail("the vm is being stopped")
	case v.fence.Fenced || l.paused:
		return fail("this node is fenced")
	case in.ID == o.req.ID && in.Error != "":
		return fail(fmt.Sprintf("destination node %s: %s", o.to, in.Error))
	case !alive(v.members[o.to]):
		return fail(fmt.Sprintf("destination node %s is %s", o.to, v.members[o.to]))
	case h.now().Sub(o.since) > migrateSetupTimeout:
		return fail(fmt.Sprintf("destination node %s did not get ready within %v: is its hypervisor daemon running?", o.to, migrateSetupTimeout))
	case in.ID != o.req.ID || in.URI == "":
		return false // still waiting; the VM runs on as usual
	}
	h.log.Info("migrating vm", "vm", r.Name, "to", o.to, "uri", in.URI, "epoch", l.epoch)
	o.done = make(chan struct{})
	h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldStatus: string(qemu.StatusMigrating)})
	h.stopWG.Add(1)
	go func(m machine, name string, epoch uint64) {
		defer h.stopWG.Done()
		defer h.poke()
		defer close(o.done)
		h.runMigration(ctx, m, name, writableVSDs(r), o, epoch, in.URI)
	}(l.m, r.Name, l.epoch)
	return true
}

// runMigration is the migration goroutine: QEMU moves the memory, the
// switchover hook moves the claims (the VM's and its writable VSDs'),
// progress goes into the record.
func (h *Hypervisor) runMigration(ctx context.Context, m machine, name string, vsds []string, o *outMigration, epoch uint64, uri string) {
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	// Read the disks' claims before the VM pauses (less downtime). Their
	// epochs cannot move on while this node holds them, unless someone
	// takes one over; then its hand-over at the switchover is refused
	// and the migration cancelled.
	disks, err := h.heldVSDs(ctx, vsds)
	if err != nil {
		o.err = err
		return
	}
	tls, err := h.run.MigrationTLS(o.to, false)
	if err != nil {
		o.err = err
		return
	}
	var lastAt time.Time
	o.info, o.err = m.Migrate(ctx, uri, qemu.MigrateOptions{
		Postcopy: o.req.Postcopy,
		TLS:      tls,
		// The source's vCPUs have stopped and its disks are flushed; the
		// destination has not started. The destination becomes the
		// holder at the next epoch here, or the migration is cancelled
		// and the source resumes: the VM never runs on two nodes.
		Switchover: func(ctx context.Context) error {
			return h.switchover(ctx, name, disks, o, epoch)
		},
		Progress: func(mi qemu.MigrationInfo) {
			now := h.now()
			switch mi.Status {
			case "completed", "failed", "cancelled": // the loop writes the end (finishOutgoing)
				o.last = mi
				return
			}
			if mi.Status == o.last.Status && now.Sub(lastAt) < migrateReportEvery {
				o.last = mi
				return
			}
			o.last, lastAt = mi, now
			if _, err := h.peer.PutState(ctx, RecordPrefix+name, map[string]string{FieldMigration: mustJSON(o.status(mi, mi.Status))}); err != nil {
				h.log.Debug("write migration progress", "vm", name, "err", err)
			}
		},
	})
}

// heldVSDs reads the claims of the VSDs, which this node must hold (its
// scribe serves them to the VM).
func (h *Hypervisor) heldVSDs(ctx context.Context, vsds []string) ([]client.ClaimView, error) {
	var out []client.ClaimView
	for _, vsd := range vsds {
		res := vsdClaim(vsd)
		cv, err := h.peer.GetClaim(ctx, res)
		if err != nil {
			return nil, fmt.Errorf("read claim %s: %w", res, err)
		}
		if cv.State != client.ClaimHeld || cv.Holder != h.cfg.NodeID {
			return nil, fmt.Errorf("claim %s is not this node's (holder %q, epoch %d, %s): the vm's disk is not served here", res, cv.Holder, cv.Epoch, cv.State)
		}
		out = append(out, cv)
	}
	return out, nil
}

// switchover hands the VM over to o.to: first the claim of every
// writable VSD (disks, read before) at its next epoch (the destination's
// scribe opens the VSD at that epoch, which fences the source's writes),
// then the VM's claim. On a failure the VSDs already handed over are
// claimed back for this node and the error cancels the migration: the
// VM's claim, claimed last, never moves without its disks.
func (h *Hypervisor) switchover(ctx context.Context, name string, disks []client.ClaimView, o *outMigration, epoch uint64) error {
	var moved []client.Claim
	undo := func(err error) error {
		for _, c := range moved {
			if _, uerr := h.peer.Claim(ctx, client.ClaimRequest{Resource: c.Resource, Epoch: c.Epoch + 1}); uerr != nil {
				h.log.Error("migration cancelled but a disk's claim could not be taken back: the vm's writes to it may fail; stop and start the vm",
					"vm", name, "claim", c.Resource, "epoch", c.Epoch+1, "err", uerr)
				err = fmt.Errorf("%w; taking %s back failed: %v", err, c.Resource, uerr)
			}
		}
		return err
	}
	for _, cv := range disks {
		c, err := h.peer.Claim(ctx, client.ClaimRequest{Resource: cv.Resource, Epoch: cv.Epoch + 1, Holder: o.to})
		if err != nil {
			return undo(fmt.Errorf("claim %s at epoch %d for node %s: %w", cv.Resource, cv.Epoch+1, o.to, err))
		}
		moved = append(moved, c)
	}
	c, err := h.peer.Claim(ctx, client.ClaimRequest{Resource: claimResource(name), Epoch: epoch + 1, Holder: o.to})
	if err != nil {
		return undo(fmt.Errorf("claim %s at epoch %d for node %s: %w", claimResource(name), epoch+1, o.to, err))
	}
	o.epoch = c.Epoch
	return nil
}

// finishOutgoing acts on the end of the migration goroutine.
func (h *Hypervisor) finishOutgoing(ctx context.Context, v view, r VMRecord, l *localVM, o *outMigration) {
	switch {
	case o.err == nil:
		// The guest runs on o.to under o.epoch; what is left here is the
		// source's QEMU in postmigrate.
		h.log.Info("vm migrated", "vm", r.Name, "to", o.to, "epoch", o.epoch, "total", o.info.Total, "downtime", o.info.Downtime, "postcopy", o.info.Postcopy)
		h.drop(ctx, r.ID, l, true)
		h.endOutgoing(ctx, v, r, o, o.status(o.info, MigrationCompleted),
			map[string]string{FieldNode: o.to, FieldEpoch: strconv.FormatUint(o.epoch, 10)})
	case errors.Is(o.err, qemu.ErrAfterSwitchover):
		// The claim moved to the destination, whose QEMU failed while
		// loading the VM. The source is paused with the whole guest,
		// unless post-copy ran (the guest's newer pages died with the
		// destination). Win the claim back at the next epoch and resume.
		// Writable VSDs moved too, and the destination's scribe may have
		// opened them (fencing this node's writes): restart the guest
		// instead (its disks are intact).
		st := o.status(o.last, MigrationFailed)
		st.Error = firstLine(o.err.Error())
		if vsds := writableVSDs(r); len(vsds) > 0 {
			st.Error += fmt.Sprintf("; its writable disks (%s) had moved with it", strings.Join(vsds, ", "))
		} else if !o.req.Postcopy {
			c, err := h.peer.Claim(ctx, client.ClaimRequest{Resource: claimResource(r.Name), Epoch: o.epoch + 1})
			if err == nil {
				if err = l.m.Resume(ctx); err == nil {
					l.epoch, l.checked = c.Epoch, h.now()
					st.Error += "; the vm runs on the source again"
					h.endOutgoing(ctx, v, r, o, st, map[string]string{FieldNode: h.cfg.NodeID,
						FieldEpoch: strconv.FormatUint(c.Epoch, 10), FieldStatus: string(qemu.StatusRunning)})
					return
				}
			}
			st.Error += "; taking the claim back failed: " + err.Error()
		}
		// The guest is lost: restart it afresh wherever placement says.
		h.drop(ctx, r.ID, l, true)
		st.Error += "; the guest was lost and is started again"
		h.endOutgoing(ctx, v, r, o, st, map[string]string{FieldNode: "", FieldEpoch: strconv.FormatUint(o.epoch, 10),
			FieldStatus: string(statusStopped), FieldStatusDetail: "lost in a failed migration; restarting"})
	default:
		// Cancelled before the switchover: the source runs on (Migrate
		// resumed it).
		st := o.status(o.last, MigrationFailed)
		st.Error = tlsHint(o.err, o.to)
		h.endOutgoing(ctx, v, r, o, st, nil)
	}
}

// maybeIncoming starts the incoming QEMU when r's source named this node
// as the destination of its current request, and answers in the record.
// It reports whether r is (now) migrating here.
func (h *Hypervisor) maybeIncoming(ctx context.Context, v view, r VMRecord) bool {
	self := h.cfg.NodeID
	req, ok, _ := ParseMigrateRequest(v.raw[r.Name][FieldMigrate])
	mg := r.Migration
	if !ok || mg == nil || mg.ID != req.ID || mg.To != self || mg.Phase != MigrationWaiting || r.Node == "" || r.Node == self {
		return false
	}
	if h.incomingTried[r.Name] == req.ID {
		return false
	}
	h.incomingTried[r.Name] = req.ID
	answer := MigrateIncoming{ID: req.ID}
	switch host, err := h.migrationHost(ctx); {
	case !v.fenceOK || v.fence.Fenced:
		answer.Error = "the destination is fenced"
	case err != nil:
		answer.Error = err.Error()
	default:
		tls, err := h.run.MigrationTLS(r.Node, true)
		if err != nil {
			answer.Error = err.Error()
			break
		}
		m, uri, err := h.run.StartIncoming(ctx, incomingSpec(h.spec(r, v.boots[r.Name])), host, req.Postcopy, tls)
		if err != nil {
			answer.Error = "start the incoming qemu: " + firstLine(err.Error())
			break
		}
		h.log.Info("incoming migration: qemu listening", "vm", r.Name, "from", r.Node, "uri", uri)
		h.vms[r.ID] = &localVM{m: m, name: r.Name, in: &inMigration{id: req.ID, source: r.Node, postcopy: req.Postcopy, since: h.now()}}
		answer.URI = uri
	}
	if answer.Error != "" {
		h.log.Warn("incoming migration refused", "vm", r.Name, "err", answer.Error)
	}
	h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldMigrateIncoming: mustJSON(answer)})
	return answer.URI != ""
}

// migrationHost is the address the incoming QEMU listens on: this node's
// gossip (backplane) address.
func (h *Hypervisor) migrationHost(ctx context.Context) (string, error) {
	ms, err := h.peer.Nodes(ctx)
	if err != nil {
		return "", fmt.Errorf("list members: %w", err)
	}
	for _, m := range ms {
		if m.ID != h.cfg.NodeID {
			continue
		}
		host, _, err := net.SplitHostPort(m.Gossip)
		if err != nil || host == "" {
			return "", fmt.Errorf("this node's gossip address %q has no host to listen on", m.Gossip)
		}
		return host, nil
	}
	return "", fmt.Errorf("this node is not in its own member list")
}

// tendIncoming watches an incoming QEMU until the VM runs in it (then it
// is an ordinary VM of this node, under the claim the source won for
// it) or the migration is abandoned (then it is killed).
func (h *Hypervisor) tendIncoming(ctx context.Context, v view, r VMRecord, l *localVM) {
	in := l.in
	// lost: if the claim had already moved here (post-copy ran), the
	// guest died with this QEMU; let placement start it afresh.
	lost := func() {
		cv, err := h.peer.GetClaim(ctx, claimResource(r.Name))
		if err != nil || cv.Holder != h.cfg.NodeID {
			return
		}
		h.log.Warn("the vm's claim had moved here: the guest is lost and will be started afresh", "vm", r.Name, "epoch", cv.Epoch)
		h.writeStatus(ctx, v.raw[r.Name], r.Name, map[string]string{FieldNode: "", FieldEpoch: strconv.FormatUint(cv.Epoch, 10),
			FieldStatus: string(statusStopped), FieldStatusDetail: "lost in a failed migration; restarting"})
	}
	abandon := func(why string) {
		h.log.Warn("incoming migration abandoned: killing its qemu", "vm", r.Name, "why", why)
		h.drop(ctx, r.ID, l, true)
		lost()
	}
	select {
	case <-l.m.Exited():
		h.log.Warn("incoming migration ended without the vm (the source cancelled it, or see qemu.log)", "vm", r.Name)
		h.drop(ctx, r.ID, l, false)
		if in.postcopy { // after a pre-copy switchover the source takes the claim back
			lost()
		}
		return
	default:
	}
	st, err := l.m.Status(ctx)
	if err != nil {
		h.log.Debug("incoming vm status", "vm", r.Name, "err", err)
		return
	}
	switch st {
	case qemu.StatusMigrating:
		req, ok, _ := ParseMigrateRequest(v.raw[r.Name][FieldMigrate])
		switch mg := r.Migration; {
		case r.Desired == DesiredStopped:
			abandon("the vm is being stopped")
		case mg != nil && mg.ID == in.id && mg.Phase == MigrationFailed:
			abandon("the source gave up: " + mg.Error)
		case (!ok || req.ID != in.id) && (mg == nil || mg.ID != in.id || mg.Phase == MigrationWaiting):
			abandon("the request is gone")
		case !alive(v.members[in.source]):
			abandon(fmt.Sprintf("the source node %s is %s", in.source, v.members[in.source]))
		case h.now().Sub(in.since) > incomingTimeout:
			abandon(fmt.Sprintf("no migration within %v", incomingTimeout))
		}
		return
	case qemu.StatusRunning, qemu.StatusPaused:
	default:
		abandon("qemu is " + string(st))
		return
	}
	// The VM has arrived. QEMU let it run only after the source's
	// switchover hook won the claim for this node; check it.
	cv, err := h.peer.GetClaim(ctx, claimResource(r.Name))
	if err != nil {
		h.log.Debug("read claim after an incoming migration", "vm", r.Name, "err", err)
		return
	}
	if cv.Holder != h.cfg.NodeID {
		abandon(fmt.Sprintf("the vm arrived but its claim is held by %s at epoch %d", cv.Holder, cv.Epoch))
		return
	}
	l.in, l.epoch, l.checked = nil, cv.Epoch, h.now()
	h.migHandled[r.Name] = in.id // the request that brought it here is the source's to end
	h.log.Info("vm migrated here", "vm", r.Name, "from", in.source, "epoch", cv.Epoch)
	r.Node, r.Epoch = h.cfg.NodeID, cv.Epoch
	h.tend(ctx, v, r, l)
}
