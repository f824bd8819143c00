package scribe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
	"github.com/shoal-hci/shoal/scribe/internal/replvol"
)

// statusRepublish is how often an unchanged status of an open VSD is
// written again (so readers can tell a live owner from a dead one).
const statusRepublish = 30 * time.Second

// openVSD is a VSD this node serves, shared by its NBD sessions.
type openVSD struct {
	rec   VSDRecord
	epoch uint64 // 0 when opened read-only
	// readOnly: opened without a claim or fence (rec.ReadOnly); its
	// status is not published and no claim is checked after a fence.
	readOnly bool
	vol      volume
	refs     int
	// stale: after a fence, the claim had moved on; I/O is refused.
	stale atomic.Bool
	// removed: `shoal vsd rm` removed it while open; I/O is refused.
	removed atomic.Bool
	last    VSDStatus // last published
	// rescanned: the pool's returned() count at the last Rescan.
	rescanned uint64
	// fencedLogged: the take-over by a newer epoch was logged.
	fencedLogged bool
}

var _ nbd.Resolver = (*Scribe)(nil)

// List implements nbd.Resolver: every VSD of the cluster.
func (s *Scribe) List(ctx context.Context) ([]string, error) {
	l, err := s.peer.ListState(ctx, VSDPrefix)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range l.Records {
		names = append(names, strings.TrimPrefix(r.Key, VSDPrefix))
	}
	return names, nil
}

// Resolve implements nbd.Resolver: it opens VSD name for writing on this
// node, claiming it (the next epoch of the claim "vsd/NAME") unless it is
// already open here. Sessions share one open Volume; the last to end
// flushes and closes it. NAME@incoming is a deferred export for the
// destination of a live migration (incoming.go).
func (s *Scribe) Resolve(ctx context.Context, name string) (nbd.Backend, nbd.ExportOptions, func(), error) {
	var none nbd.ExportOptions
	if base, ok := incomingName(name); ok {
		return s.resolveIncoming(ctx, base) // see incoming.go
	}
	if ValidName(name) != nil {
		return nil, none, nil, nbd.ErrUnknownExport
	}
	st := s.storage()
	if st == nil {
		return nil, none, nil, ErrNotMember
	}
	s.vmu.Lock()
	defer s.vmu.Unlock()
	o := s.open[name]
	if o == nil {
		var err error
		if o, err = s.openVSD(ctx, st, name); err != nil {
			return nil, none, nil, err
		}
		o.rescanned = st.pool.returned()
		s.open[name] = o
		s.publishStatus(ctx, st, name, o, true)
	}
	o.refs++
	opts := nbd.ExportOptions{MultiConn: true}
	var g nbd.Backend = guarded{volume: o.vol, fenced: &s.fenced, stale: &o.stale, removed: &o.removed}
	if o.readOnly {
		opts.ReadOnly = true
		// Its content never changes: reads go on while the node is
		// fenced.
		g = guarded{volume: o.vol, fenced: new(atomic.Bool), stale: &o.stale, removed: &o.removed}
	}
	var once bool
	release := func() {
		s.vmu.Lock()
		defer s.vmu.Unlock()
		if once {
			return
		}
		once = true
		s.release(name, o)
	}
	return g, opts, release, nil
}

func (s *Scribe) openVSD(ctx context.Context, st *storage, name string) (*openVSD, error) {
	rec, err := s.peer.GetState(ctx, VSDPrefix+name)
	if errors.Is(err, client.ErrStateNotFound) {
		return nil, nbd.ErrUnknownExport
	}
	if err != nil {
		return nil, fmt.Errorf("read vsd %s: %w", name, err)
	}
	vsd, err := ParseVSD(rec)
	if err != nil {
		return nil, err
	}
	// The other nodes' records may be newer than the last refresh.
	if err := s.refreshPool(ctx, st); err != nil {
		return nil, fmt.Errorf("open vsd %s: %w", name, err)
	}
	if vsd.ReadOnly {
		return s.openReadOnly(ctx, st, vsd)
	}
	if err := s.checkTakeOver(ctx, st, name); err != nil {
		return nil, err
	}
	cl, err := s.peer.Claim(ctx, client.ClaimRequest{Resource: ClaimResource(name)})
	if err != nil {
		return nil, fmt.Errorf("open vsd %s: claim %s: %w", name, ClaimResource(name), err)
	}
	cfg := replvol.DefaultConfig()
	cfg.VSD, cfg.Size, cfg.Replicas, cfg.Epoch = vsd.ID, vsd.Size, vsd.Replicas, cl.Epoch
	cfg.Pool, cfg.LocalNode = st.pool, st.nodeID
	cfg.Log = s.cfg.Log.With("vsd", name, "epoch", cl.Epoch)
	cfg.WriteBack = !s.cfg.WriteThrough
	if s.cfg.ReplicaTimeout > 0 {
		cfg.Timeout = s.cfg.ReplicaTimeout
	}
	vol, err := replvol.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open vsd %s at epoch %d: %w", name, cl.Epoch, err)
	}
	if err := s.checkNotRemoved(ctx, vsd); err != nil {
		vol.Close()
		return nil, err
	}
	s.cfg.Log.Info("vsd opened", "vsd", name, "epoch", cl.Epoch, "size", vsd.Size, "replicas", vsd.Replicas)
	return &openVSD{rec: vsd, epoch: cl.Epoch, vol: vol}, nil
}

// openReadOnly opens a read-only VSD (an image): no claim, no fence, so
// any number of nodes read it at once.
func (s *Scribe) openReadOnly(ctx context.Context, st *storage, vsd VSDRecord) (*openVSD, error) {
	cfg := replvol.DefaultConfig()
	cfg.VSD, cfg.Size, cfg.Replicas, cfg.ReadOnly = vsd.ID, vsd.Size, vsd.Replicas, true
	cfg.Pool, cfg.LocalNode = st.pool, st.nodeID
	cfg.Log = s.cfg.Log.With("vsd", vsd.Name, "read_only", true)
	if s.cfg.ReplicaTimeout > 0 {
		cfg.Timeout = s.cfg.ReplicaTimeout
	}
	vol, err := replvol.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open read-only vsd %s: %w", vsd.Name, err)
	}
	if err := s.checkNotRemoved(ctx, vsd); err != nil {
		vol.Close()
		return nil, err
	}
	s.cfg.Log.Info("vsd opened read-only", "vsd", vsd.Name, "size", vsd.Size)
	return &openVSD{rec: vsd, vol: vol, readOnly: true}, nil
}

// checkNotRemoved fails when vsd was removed while this node opened it
// (`shoal vsd rm` won the race: its record is gone or replaced, or its
// vsd-deleted/ record exists). Removal wins over any open; one that
// happens later is caught by reclaim.
func (s *Scribe) checkNotRemoved(ctx context.Context, vsd VSDRecord) error {
	rec, err := s.peer.GetState(ctx, VSDPrefix+vsd.Name)
	switch {
	case errors.Is(err, client.ErrStateNotFound):
		return fmt.Errorf("vsd %s was removed while it was being opened: %w", vsd.Name, nbd.ErrUnknownExport)
	case err != nil:
		return fmt.Errorf("open vsd %s: re-read its record: %w", vsd.Name, err)
	}
	if now, err := ParseVSD(rec); err != nil || now.ID != vsd.ID {
		return fmt.Errorf("vsd %s was removed (and maybe created again) while it was being opened: open it again", vsd.Name)
	}
	if _, err := s.peer.GetState(ctx, DeletedKey(vsd.ID)); err == nil {
		return fmt.Errorf("vsd %s was removed while it was being opened: %w", vsd.Name, nbd.ErrUnknownExport)
	} else if !errors.Is(err, client.ErrStateNotFound) {
		return fmt.Errorf("open vsd %s: check whether it was removed: %w", vsd.Name, err)
	}
	return nil
}

// checkTakeOver refuses to open a VSD that another node which is up has
// open at the VSD's current epoch: a stray client (qemu-img info on the
// wrong node) must not fence a running VM. Taking over is then explicit:
// claim the next epoch for this node (`shoal claim take vsd/NAME`), and
// the open goes ahead. A VSD whose owner is down is taken over at once.
func (s *Scribe) checkTakeOver(ctx context.Context, st *storage, name string) error {
	view, err := s.peer.GetClaim(ctx, ClaimResource(name))
	if err != nil {
		return fmt.Errorf("open vsd %s: read its claim: %w", name, err)
	}
	if view.State == client.ClaimHeld && view.Holder == st.nodeID {
		return nil
	}
	rec, err := s.peer.GetState(ctx, VSDStatusPrefix+name)
	if err != nil {
		return nil // never opened, or the status not here yet
	}
	cur := ParseVSDStatus(rec)
	if cur.Owner == "" || cur.Owner == st.nodeID || cur.Epoch != view.Epoch || !st.pool.isUp(cur.Owner) {
		return nil
	}
	return fmt.Errorf("%w: vsd %s is open on node %s (epoch %d); to move it here, stop its user there, or take it over with `shoal claim take %s` on this node (the other node's writes are refused from then on)",
		ErrInUse, name, cur.Owner, cur.Epoch, ClaimResource(name))
}

// clearStaleStatuses marks closed every VSD status that names this node
// as owner: after a (re)start nothing is open here.
func (s *Scribe) clearStaleStatuses(ctx context.Context, st *storage) {
	l, err := s.peer.ListState(ctx, VSDStatusPrefix)
	if err != nil {
		s.cfg.Log.Warn("list vsd statuses", "err", err)
		return
	}
	for _, r := range l.Records {
		cur := ParseVSDStatus(r)
		if cur.Owner != st.nodeID {
			continue
		}
		cur.Owner, cur.Updated = "", s.cfg.Now()
		if _, err := s.peer.PutState(ctx, r.Key, cur.Fields()); err != nil {
			s.cfg.Log.Warn("clear the status of a vsd this node no longer has open", "key", r.Key, "err", err)
		}
	}
}

// release drops one session's reference (s.vmu held); the last one
// flushes and closes the Volume.
func (s *Scribe) release(name string, o *openVSD) {
	o.refs--
	if o.refs > 0 {
		return
	}
	delete(s.open, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := o.vol.Flush(ctx); err != nil {
		s.cfg.Log.Warn("flush vsd on close", "vsd", name, "err", err)
	}
	o.vol.Close()
	if st := s.storage(); st != nil {
		s.publishClosed(ctx, name, o)
	}
	s.cfg.Log.Info("vsd closed", "vsd", name, "epoch", o.epoch)
}

// statusOf summarises a Volume.
func (s *Scribe) statusOf(st *storage, o *openVSD) VSDStatus {
	vs := o.vol.Status()
	return VSDStatus{
		Owner: st.nodeID, Epoch: o.epoch, Allocated: vs.BytesUsed, Extents: vs.Extents,
		Degraded: len(vs.Degraded), Unavailable: len(vs.Unavailable), Updated: s.cfg.Now(),
	}
}

// publishStatus writes o's status when it changed, or when force is set,
// or when the last one is old (s.vmu held).
func (s *Scribe) publishStatus(ctx context.Context, st *storage, name string, o *openVSD, force bool) {
	if o.readOnly {
		return // readers own nothing; many nodes may have it open
	}
	cur := s.statusOf(st, o)
	prev := o.last
	prev.Updated = cur.Updated
	if !force && prev == cur && cur.Updated.Sub(o.last.Updated) < statusRepublish {
		return
	}
	if s.takenOver(ctx, name, o) {
		return
	}
	if _, err := s.peer.PutState(ctx, VSDStatusPrefix+name, cur.Fields()); err != nil {
		s.cfg.Log.Warn("publish vsd status", "vsd", name, "err", err)
		return
	}
	if cur.Degraded > 0 && o.last.Degraded == 0 {
		s.cfg.Log.Warn("vsd degraded: extents have fewer replicas than configured", "vsd", name, "degraded", cur.Degraded)
	}
	o.last = cur
}

// publishClosed records that this node no longer serves the VSD, unless
// another node has taken it over since (a higher epoch in the record).
func (s *Scribe) publishClosed(ctx context.Context, name string, o *openVSD) {
	if o.readOnly {
		return
	}
	if s.takenOver(ctx, name, o) {
		return
	}
	last := o.last
	last.Owner, last.Updated = "", s.cfg.Now()
	if _, err := s.peer.PutState(ctx, VSDStatusPrefix+name, last.Fields()); err != nil {
		s.cfg.Log.Warn("publish vsd status", "vsd", name, "err", err)
	}
}

// takenOver reports whether the published status names a newer epoch
// than o's: another node took the VSD over, and this node, a stale owner,
// must not overwrite its status.
func (s *Scribe) takenOver(ctx context.Context, name string, o *openVSD) bool {
	rec, err := s.peer.GetState(ctx, VSDStatusPrefix+name)
	if err != nil {
		return false
	}
	if cur := ParseVSDStatus(rec); cur.Epoch > o.epoch {
		if !o.fencedLogged {
			s.cfg.Log.Warn("vsd taken over by another node: this node's writes are refused from now on", "vsd", name, "epoch", o.epoch, "new_epoch", cur.Epoch, "new_owner", cur.Owner)
			o.fencedLogged = true
		}
		return true
	}
	return false
}

// publishStatuses publishes the status of every open VSD that changed,
// after rescanning those with unavailable extents when a node came back.
func (s *Scribe) publishStatuses(ctx context.Context) {
	st := s.storage()
	if st == nil {
		return
	}
	s.vmu.Lock()
	defer s.vmu.Unlock()
	back := st.pool.returned()
	for name, o := range s.open {
		if o.rescanned != back && len(o.vol.Status().Unavailable) > 0 {
			o.rescanned = back
			left, err := o.vol.Rescan(ctx)
			s.cfg.Log.Info("vsd rescanned after a node came back", "vsd", name, "unavailable", left, "err", err)
		}
		s.publishStatus(ctx, st, name, o, false)
	}
}
