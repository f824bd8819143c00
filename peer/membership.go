package peer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/gossiplog"
)

// Serf tags. A member's tags ride in every alive message about it, which
// every member retransmits several times, so they are kept short: the
// fewer bytes per member, the more member updates fit in one gossip packet
// (docs/peer.md "Scale").
const (
	tagCluster  = "c"  // the cluster ID's first clusterTagLen hex digits
	tagVersion  = "v"  // shoal version
	tagRoles    = "r"  // roles, absent when none
	tagAPIPort  = "a"  // node API port on the gossip IP, absent when DefaultAPIPort
	tagHardware = "hw" // hardware fingerprint, absent when unknown
)

// clusterTagLen is how much of the cluster ID the cluster tag carries. The
// tag is a second check after the gossip key (a node of another cluster
// cannot decrypt our gossip at all), so 48 bits are plenty.
const clusterTagLen = 12

// clusterTag is the cluster tag's value for a cluster ID.
func clusterTag(clusterID string) string { return clusterID[:min(clusterTagLen, len(clusterID))] }

// gossipTags returns the serf tags a node announces.
func gossipTags(clusterID, version, roles, hardware string, apiPort int) map[string]string {
	t := map[string]string{tagCluster: clusterTag(clusterID), tagVersion: version}
	if roles != "" {
		t[tagRoles] = roles
	}
	if hardware != "" {
		t[tagHardware] = hardware
	}
	if apiPort != DefaultAPIPort {
		t[tagAPIPort] = strconv.Itoa(apiPort)
	}
	return t
}

// memberAPI is the node API address of a member: its gossip IP and the
// port of its API port tag.
func memberAPI(m serf.Member) string {
	port := m.Tags[tagAPIPort]
	if port == "" {
		port = strconv.Itoa(DefaultAPIPort)
	}
	return net.JoinHostPort(m.Addr.String(), port)
}

// User events carrying cluster settings between members (small; the
// periodic mTLS meta sync repairs any that are lost).
const (
	eventRevoke = "shoal-revoke"
	eventPolicy = "shoal-policy"
)

// GossipConfig returns the serf configuration of this node's timers
// (without name, addresses, keys) for a node that expects the given number
// of members (itself included) when its gossip starts: up to
// t.SmallCluster, it probes with the small-cluster timers; above
// t.LargeCluster, it retransmits updates fewer times (retransmitMult).
// Exported for the benchmark.
func GossipConfig(t Timers, expected int) *serf.Config {
	sc := serf.DefaultConfig()
	mc := memberlist.DefaultLANConfig()
	mc.ProbeInterval = t.ProbeInterval
	mc.ProbeTimeout = t.ProbeTimeout
	if expected <= t.SmallCluster {
		mc.ProbeInterval, mc.ProbeTimeout = t.SmallProbeInterval, t.SmallProbeTimeout
	}
	mc.RetransmitMult = retransmitMult(t, expected, mc.RetransmitMult)
	mc.GossipInterval = t.GossipInterval
	mc.SuspicionMult = t.SuspicionMult
	mc.PushPullInterval = t.PushPull
	mc.DeadNodeReclaimTime = t.DeadReclaim
	mc.EnableCompression = false // CPU over bytes on a backplane; see NOTES.md
	mc.GossipToTheDeadTime = 30 * t.GossipInterval
	sc.MemberlistConfig = mc
	sc.ReconnectInterval = t.ReconnectInterval
	sc.ReapInterval = t.ReapInterval
	sc.ReconnectTimeout = t.ReconnectTimeout
	sc.TombstoneTimeout = t.TombstoneTimeout
	sc.DisableCoordinates = true
	sc.EnableNameConflictResolution = true
	return sc
}

// retransmitMult is the retransmission multiplier of a node that expects
// the given number of members: t.RetransmitMult (def when zero) up to
// t.LargeCluster, one less per doubling above it, at least
// t.MinRetransmitMult. With the defaults: 4 up to 128 members, 3 up to
// 256, 2 above (6 retransmissions at 512 instead of 12).
func retransmitMult(t Timers, expected, def int) int {
	m := def
	if t.RetransmitMult > 0 {
		m = t.RetransmitMult
	}
	if t.LargeCluster <= 0 {
		return m
	}
	for n := t.LargeCluster; n < expected && m > t.MinRetransmitMult; n *= 2 {
		m--
	}
	return m
}

// startMembership starts serf with this node's cluster keyring and joins
// the given gossip addresses (and whatever the serf snapshot remembers).
func (p *Peer) startMembership(join []string) error {
	keys, err := loadKeyring(p.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("%w (the node's cluster files are incomplete; `shoal cluster leave` resets them)", err)
	}
	kr, err := memberlist.NewKeyring(keys, keys[0])
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	p.mu.Lock()
	clusterID := p.cl.ClusterID
	p.mu.Unlock()
	expected := p.expectedMembers(len(join))
	sc := GossipConfig(p.cfg.Timers, expected)
	sc.NodeName = p.id.NodeID
	sc.Tags = gossipTags(clusterID, p.cfg.Version, p.cfg.Roles, p.cfg.Hardware, p.apiLn.Addr().(*net.TCPAddr).Port)
	sc.EventCh = p.serfEvents
	sc.Logger = gossiplog.New(p.log)
	sc.MemberlistConfig.Logger = sc.Logger
	sc.MemberlistConfig.BindAddr = p.bindIP.String()
	sc.MemberlistConfig.BindPort = p.gossipPort
	sc.MemberlistConfig.AdvertiseAddr = p.bindIP.String()
	sc.MemberlistConfig.AdvertisePort = p.gossipPort
	sc.MemberlistConfig.Keyring = kr
	sc.MemberlistConfig.GossipVerifyIncoming = true
	sc.MemberlistConfig.GossipVerifyOutgoing = true
	sc.KeyringFile = filepath.Join(p.cfg.DataDir, keyringFile)
	sc.SnapshotPath = filepath.Join(p.cfg.DataDir, snapshotFile)
	sc.Merge = mergeGuard{p}
	p.releasePortHold()
	tr, err := newGossipTransport(p.bindIP, p.gossipPort, p.cfg.GossipBlocked, sc.Logger)
	if err != nil {
		return fmt.Errorf("start gossip transport on %s: %w", p.GossipAddr(), err)
	}
	sc.MemberlistConfig.Transport = tr
	s, err := serf.Create(sc)
	if err != nil {
		tr.Shutdown()
		return fmt.Errorf("start gossip on %s: %w", p.GossipAddr(), err)
	}
	p.mu.Lock()
	p.serf = s
	p.mu.Unlock()
	p.log.Info("gossip started", "cluster_id", clusterID, "addr", p.GossipAddr(), "keys", len(keys),
		"expected_members", expected, "probe_interval", sc.MemberlistConfig.ProbeInterval)
	if len(join) > 0 {
		p.joinGossip(join, false)
	}
	d := resyncAfter(p.cfg.Timers, s.NumNodes())
	p.mu.Lock()
	p.resyncAt = p.now().Add(d)
	p.mu.Unlock()
	select { // Run's loop re-syncs after d, sooner than the next tick
	case p.resyncIn <- d:
	default:
	}
	return nil
}

// expectedMembers is how many members a node whose gossip starts now
// expects: itself, and the nodes heard on the backplane lately that are of
// its cluster or unclaimed (a rack powering on: they join next), or the
// gossip addresses it was given to join, or the members alive in its serf
// snapshot when it left (a member restarting before discovery heard
// anyone), whichever is most.
func (p *Peer) expectedMembers(join int) int {
	if f, err := os.Open(filepath.Join(p.cfg.DataDir, snapshotFile)); err == nil {
		join = max(join, snapshotMembers(io.LimitReader(f, 16<<20)))
		f.Close()
	}
	p.mu.Lock()
	var clusterID string
	if p.cl != nil {
		clusterID = p.cl.ClusterID
	}
	p.mu.Unlock()
	heard := 0
	if a := p.ann.Load(); a != nil {
		for _, b := range a.Peers() {
			if b.NodeID != p.id.NodeID && (b.ClusterID == "" || b.ClusterID == clusterID) {
				heard++
			}
		}
	}
	return 1 + max(heard, join)
}

// snapshotMembers counts the members alive in a serf snapshot (lines
// "alive: NAME ADDR" and "not-alive: NAME", the last line about a name
// wins), itself included. Other lines and unreadable input count nothing.
func snapshotMembers(r io.Reader) int {
	alive := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "alive: "); ok {
			if name, _, ok := strings.Cut(rest, " "); ok && name != "" {
				alive[name] = true
			}
		} else if name, ok := strings.CutPrefix(line, "not-alive: "); ok {
			delete(alive, name)
		}
	}
	return len(alive)
}

// resyncAfter is how long after joining gossip a node that sees n members
// exchanges full state once more, with another random member. A joiner
// learns the membership from the one member it joined through; a node
// that joined elsewhere a moment before may not have reached that member
// yet, and its arrival rumour can die out (each member retransmits it a
// bounded number of times) before the members have learnt of the joiner,
// so the joiner would miss it until the next periodic push/pull (20 s at
// 256 nodes). A rumour reaches n members in about log3(n) gossip rounds
// (fan-out 3); half as many again is the margin: 2 gossip intervals at 3
// members, 5 at 32, 8 at 256, 9 at 512 (it was 10 at every size, which
// cost 32 nodes half a second of convergence).
func resyncAfter(t Timers, n int) time.Duration {
	rounds := math.Ceil(1.5 * math.Log(float64(max(n, 3))) / math.Log(3))
	return time.Duration(rounds) * t.GossipInterval
}

// resync exchanges full state once more after joining gossip, unless done
// already (by the timer of Run's loop or by heal on a tick, whichever comes
// first).
func (p *Peer) resync() {
	p.mu.Lock()
	due := !p.resyncAt.IsZero()
	p.resyncAt = time.Time{}
	p.mu.Unlock()
	if s := p.serfInstance(); due && s != nil {
		p.joinGossip(resyncTargets(s, p.id.NodeID), true)
	}
}

// resyncTargets picks up to three random alive members other than self,
// for the full-state exchange after joining.
func resyncTargets(s *serf.Serf, self string) []string {
	var addrs []string
	for _, m := range s.Members() {
		if m.Status == serf.StatusAlive && m.Name != self {
			addrs = append(addrs, net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))))
		}
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	return addrs[:min(3, len(addrs))]
}

// joinGossip contacts addrs in random order until one answers (at most
// three tries, so that many joiners do not all hit one seed).
func (p *Peer) joinGossip(addrs []string, quiet bool) {
	s := p.serfInstance()
	if s == nil || len(addrs) == 0 {
		return
	}
	if err := joinOne(s, addrs); err != nil {
		lv := slog.LevelWarn
		if quiet {
			lv = slog.LevelDebug
		}
		p.log.Log(context.Background(), lv, "gossip join", "addrs", addrs, "err", err)
	}
}

// joinOne contacts up to three of addrs, chosen at random, one at a time,
// and stops at the first that answers: one full-state exchange gives the
// joiner the whole membership, and gossip spreads its arrival from there.
// (serf's Join would exchange full state with every address given, which
// triples the cost of each join for no gain.)
//
// It joins through memberlist, not serf's Join, which also broadcasts a
// join intent: a second message per join that every member decodes and
// retransmits as often as the alive message itself, doubling the gossip a
// join costs. Intents only matter to override an older leave intent about
// this node, and serf refutes such an intent itself when it hears one;
// serf's own reconnects join through memberlist the same way.
func joinOne(s *serf.Serf, addrs []string) error {
	addrs = slices.Clone(addrs)
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	var errs []error
	for _, a := range addrs[:min(3, len(addrs))] {
		n, err := s.Memberlist().Join([]string{a})
		if n > 0 {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (p *Peer) serfInstance() *serf.Serf {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.serf
}

// stopMembership shuts serf down, leaving the cluster first when leave is set.
func (p *Peer) stopMembership(leave bool) {
	p.mu.Lock()
	s := p.serf
	p.serf = nil
	p.mu.Unlock()
	if s == nil {
		return
	}
	if leave {
		if err := s.Leave(); err != nil {
			p.log.Warn("leave gossip", "err", err)
		}
	}
	s.Shutdown()
}

// mergeGuard refuses gossip with nodes of another cluster and removed nodes.
type mergeGuard struct{ p *Peer }

func (g mergeGuard) NotifyMerge(members []*serf.Member) error {
	g.p.mu.Lock()
	cl := g.p.cl
	var clusterID string
	var revoked []string
	if cl != nil {
		clusterID, revoked = cl.ClusterID, cl.Revoked
	}
	g.p.mu.Unlock()
	for _, m := range members {
		if c := m.Tags[tagCluster]; c != clusterTag(clusterID) {
			// The tag holds the first clusterTagLen digits of the ID.
			g.p.log.Warn("refused gossip from a node of another cluster", "peer", m.Name, "addr", net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))), "its_cluster_prefix", c, "our_cluster", clusterID)
			g.p.record("refuse", m.Name, "other cluster "+c+"…")
			return fmt.Errorf("node %s belongs to cluster %q…, not %q", m.Name, c, clusterID)
		}
		if slices.Contains(revoked, m.Name) {
			g.p.log.Warn("refused gossip from a removed node", "peer", m.Name)
			g.p.record("refuse", m.Name, "removed")
			return fmt.Errorf("node %s was removed from cluster %s", m.Name, clusterID)
		}
	}
	return nil
}

func (p *Peer) eventLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-p.serfEvents:
			switch e := e.(type) {
			case serf.MemberEvent:
				for _, m := range e.Members {
					p.memberEvent(e.Type, m)
				}
			case serf.UserEvent:
				p.userEvent(e)
			}
		}
	}
}

func (p *Peer) memberEvent(t serf.EventType, m serf.Member) {
	if m.Name == p.id.NodeID {
		return
	}
	var typ string
	p.mu.Lock()
	switch t {
	case serf.EventMemberJoin:
		typ = "join"
		if p.failed[m.Name] {
			typ = "recover"
		}
		delete(p.failed, m.Name)
	case serf.EventMemberFailed:
		typ = "fail"
		p.failed[m.Name] = true
	case serf.EventMemberLeave:
		typ = "leave"
		delete(p.failed, m.Name)
	case serf.EventMemberUpdate:
		typ = "update"
	case serf.EventMemberReap:
		typ = "reap"
		delete(p.failed, m.Name)
	default:
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	p.record(typ, m.Name, net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))))
	p.log.Info("member "+typ, "peer", m.Name, "addr", m.Addr.String())
}

func (p *Peer) userEvent(e serf.UserEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cl == nil {
		return
	}
	var m meta
	switch e.Name {
	case eventRevoke:
		m.Revoked = []string{string(e.Payload)}
	case eventPolicy:
		// payload: policy|unix nanos|node
		parts := strings.SplitN(string(e.Payload), "|", 3)
		if len(parts) != 3 {
			return
		}
		ns, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil {
			return
		}
		m.Policy, m.PolicyTime, m.PolicyBy = parts[0], timeFromNanos(ns), parts[2]
	default:
		return
	}
	p.mergeMetaLocked(m)
}

// mergeMetaLocked merges cluster settings and stores them (p.mu held).
func (p *Peer) mergeMetaLocked(m meta) {
	if !p.cl.merge(m) {
		return
	}
	if err := saveClusterState(p.cfg.DataDir, p.cl); err != nil {
		p.log.Error("store cluster state", "err", err)
	}
	for _, id := range m.Revoked {
		delete(p.pending, id)
		delete(p.approved, id)
	}
}

// members returns the membership as this node sees it.
func (p *Peer) members() []client.Member { return serfMembers(p.serfInstance()) }

// serfMembers returns the members s knows, sorted by node ID (none when s
// is nil).
func serfMembers(s *serf.Serf) []client.Member {
	var out []client.Member
	if s != nil {
		suspect := map[string]bool{}
		for _, n := range s.Memberlist().Members() {
			if n.State == memberlist.StateSuspect {
				suspect[n.Name] = true
			}
		}
		for _, m := range s.Members() {
			st := client.StateAlive
			switch m.Status {
			case serf.StatusAlive:
				if suspect[m.Name] {
					st = client.StateSuspect
				}
			case serf.StatusLeaving:
				st = client.StateLeaving
			case serf.StatusLeft:
				st = client.StateLeft
			case serf.StatusFailed:
				st = client.StateFailed
			default:
				continue
			}
			out = append(out, client.Member{ID: m.Name, Name: "shoal-" + m.Name[:min(6, len(m.Name))], State: st,
				Gossip: net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))), API: memberAPI(m),
				Version: m.Tags[tagVersion], Roles: m.Tags[tagRoles], Hardware: m.Tags[tagHardware]})
		}
	}
	slices.SortFunc(out, func(a, b client.Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// heal runs on members every tick: joins members of our cluster heard by
// discovery but not alive in gossip for Timers.HealGrace (partitions,
// restarts, a missed arrival rumour), recovers a
// keyring missed during a rotation, and syncs cluster settings.
func (p *Peer) heal(ctx context.Context) {
	s := p.serfInstance()
	if s == nil {
		return
	}
	alive := map[string]bool{}
	for _, m := range s.Members() {
		if m.Status == serf.StatusAlive {
			alive[m.Name] = true
		}
	}
	p.mu.Lock()
	clusterID := p.cl.ClusterID
	revoked := append([]string(nil), p.cl.Revoked...)
	resync := !p.resyncAt.IsZero() && !p.now().Before(p.resyncAt)
	p.mu.Unlock()
	if resync {
		p.resync()
	}
	heard := map[string]string{}    // node ID: gossip address
	heardAPI := map[string]string{} // node ID: node API address
	if a := p.ann.Load(); a != nil {
		for _, b := range a.Peers() {
			// Only nodes heard lately: a node just killed is still in the
			// table for a few beacon periods.
			if b.ClusterID == clusterID && b.Gossip != "" && p.now().Sub(b.At) <= 2*p.cfg.Timers.Beacon && !slices.Contains(revoked, b.NodeID) {
				heard[b.NodeID], heardAPI[b.NodeID] = b.Gossip, b.API
			}
		}
	}
	var missing, missingAPI []string
	for _, id := range p.missing.due(p.now(), p.cfg.Timers.HealGrace, heard, alive) {
		missing = append(missing, heard[id])
		missingAPI = append(missingAPI, heardAPI[id])
	}
	if len(missing) > 0 {
		p.log.Debug("joining members heard on the backplane but not in gossip", "n", len(missing))
		p.mu.Lock()
		fetch := len(alive) <= 1 && p.now().Sub(p.lastFetch) >= p.cfg.Timers.MetaSync
		if fetch {
			p.lastFetch = p.now()
		}
		p.mu.Unlock()
		if fetch {
			// Alone while members are around: maybe the gossip key was
			// rotated while this node was away. Fetch it over mutual TLS.
			if p.fetchKeyring(ctx, missingAPI) {
				// Removed by an operator: stop gossiping, so members are
				// not flooded with messages they cannot decrypt.
				p.mu.Lock()
				p.phase = client.PhaseRemoved // first: the tick starts Services only for members
				p.mu.Unlock()
				p.stopServices()
				p.stopMembership(false)
				p.record("remove", p.id.NodeID, "this node was removed by an operator")
				return
			}
		}
		p.joinGossip(missing, true)
	}
	p.mu.Lock()
	due := p.now().Sub(p.lastMeta) >= p.cfg.Timers.MetaSync
	if due {
		p.lastMeta = p.now()
	}
	p.mu.Unlock()
	if due {
		p.syncMeta(ctx)
	}
}
