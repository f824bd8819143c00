package peer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/ca"
	"github.com/shoal-hci/shoal/peer/internal/discovery"
	"github.com/shoal-hci/shoal/peer/internal/identity"
	"github.com/shoal-hci/shoal/peer/internal/statestore"
)

// Peer is one node's shoal peer daemon.
type Peer struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	id     identity.Identity
	events *eventRing

	bindIP     net.IP
	gossipPort int // chosen at New when cfg.GossipPort is zero
	// portHold keeps gossipPort bound from New until gossip starts (or
	// Run ends); guarded by mu.
	portHold   []io.Closer
	apiLn      net.Listener
	localLn    net.Listener
	ann        atomic.Pointer[discovery.Announcer]
	serfEvents chan serf.Event

	mu        sync.Mutex
	phase     string
	cl        *clusterState // nil while unclaimed
	ca        *ca.CA
	cert      tls.Certificate // node certificate, or self-signed while unclaimed
	serf      *serf.Serf
	manual    bool                    // after leave: no formation or auto-join
	code      string                  // six-digit admission code shown while joining
	join      *joinAttempt            // the admission in progress, if any
	pending   map[string]*pendingNode // nodes waiting for approval at this member
	approved  map[string]bool         // approved here; admitted on their next poll
	formGroup map[string]bool         // nodes this node formed the cluster with
	failed    map[string]bool         // members last seen failed (to report recover)
	lastSet   string                  // formation: unclaimed set last seen
	setSince  time.Time
	lastMeta  time.Time
	lastFetch time.Time          // last keyring fetch over mTLS (rate-limited)
	resyncAt  time.Time          // when to exchange full state once more after joining gossip (membership.go); zero when done
	missing   missingMembers     // members heard but not in gossip, for heal (Run's loop only)
	listening time.Time          // when discovery started; decisions wait until every node had time to be heard
	svcCancel context.CancelFunc // stops Services when leaving; nil when they are not running
	svcHold   bool               // Services must not start: the node is leaving (the tick would restart them under stopServices)
	svcWG     sync.WaitGroup
	memberNow chan struct{}      // signalled when the node becomes a member: tick at once (start Services)
	resyncIn  chan time.Duration // startMembership: re-sync after this long (Run's loop owns the timer)

	store    atomic.Pointer[statestore.Store] // the cluster state; nil outside Run
	stateSvc *stateService                    // replicates it (a Service)
	claims   *claimService                    // claims and fence (claimsvc.go)
}

type pendingNode struct {
	client.Member
	codeHash string
	since    time.Time
}

type joinAttempt struct {
	api       string // node API of the member asked
	clusterID string // expected; empty for an explicit join
	at        time.Time
	explicit  bool
	logged    bool // "waiting for approval" was logged
}

// New loads (or creates) the node identity and binds the sockets; Run
// serves them.
func New(cfg Config) (*Peer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("peer config: %w", err)
	}
	p := &Peer{cfg: cfg, log: cfg.Log, now: cfg.Now, events: newEventRing(1000),
		pending: map[string]*pendingNode{}, approved: map[string]bool{}, formGroup: map[string]bool{}, failed: map[string]bool{},
		serfEvents: make(chan serf.Event, 1024), phase: client.PhaseUnclaimed, memberNow: make(chan struct{}, 1),
		resyncIn: make(chan time.Duration, 1)}
	p.claims = newClaimService(p)
	p.cfg.Services = append(p.cfg.Services[:len(p.cfg.Services):len(p.cfg.Services)], p.claims)
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.stateSvc = &stateService{p: p}
	p.cfg.Services = append(slices.Clone(p.cfg.Services), p.stateSvc)
	id, created, err := identity.LoadOrCreate(cfg.DataDir, cfg.NodeID, p.now())
	if err != nil {
		return nil, err
	}
	p.id = id
	p.log = p.log.With("node", id.NodeID[:8])
	if created {
		p.log.Info("created node identity", "node_id", id.NodeID, "data_dir", cfg.DataDir)
	}
	if cfg.Bind != "" {
		p.bindIP = net.ParseIP(cfg.Bind)
	} else {
		ips, err := interfaceAddrs()
		if err != nil {
			return nil, fmt.Errorf("list addresses: %w", err)
		}
		if p.bindIP, err = AutoBind(ips); err != nil {
			return nil, err
		}
	}
	cl, err := loadClusterState(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, manualFile)); err == nil {
		p.manual = true
	}
	if cl != nil {
		if err := p.adoptCluster(cl); err != nil {
			return nil, err
		}
	} else if err := p.selfSign(); err != nil {
		return nil, err
	}
	p.code = sixDigits()

	p.gossipPort = cfg.GossipPort
	if p.gossipPort == 0 {
		if p.gossipPort, p.portHold, err = freePort(p.bindIP); err != nil {
			return nil, err
		}
	}
	p.apiLn, err = net.Listen("tcp", net.JoinHostPort(p.bindIP.String(), strconv.Itoa(cfg.APIPort)))
	if err != nil {
		p.releasePortHold()
		return nil, fmt.Errorf("listen node API on %s port %d: %w", p.bindIP, cfg.APIPort, err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Socket), 0o755); err != nil {
		p.apiLn.Close()
		p.releasePortHold()
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	os.Remove(cfg.Socket) // a stale socket of a previous run
	p.localLn, err = net.Listen("unix", cfg.Socket)
	if err != nil {
		p.apiLn.Close()
		p.releasePortHold()
		return nil, fmt.Errorf("listen on %q: %w", cfg.Socket, err)
	}
	if err := os.Chmod(cfg.Socket, 0o600); err != nil {
		p.apiLn.Close()
		p.localLn.Close()
		p.releasePortHold()
		return nil, fmt.Errorf("chmod %q: %w", cfg.Socket, err)
	}
	return p, nil
}

// NodeID returns this node's ID.
func (p *Peer) NodeID() string { return p.id.NodeID }

// APIAddr is the node API's host:port.
func (p *Peer) APIAddr() string { return p.apiLn.Addr().String() }

// GossipAddr is serf's host:port.
func (p *Peer) GossipAddr() string {
	return net.JoinHostPort(p.bindIP.String(), strconv.Itoa(p.gossipPort))
}

// Run serves until ctx ends, then shuts down (without leaving the cluster:
// a stopped node is failed until it comes back or is removed) and returns nil.
func (p *Peer) Run(ctx context.Context) error {
	st, err := p.openState()
	if err != nil {
		return err
	}
	if err := p.stateSvc.open(st); err != nil {
		st.Close()
		return err
	}
	p.store.Store(st)
	defer func() { p.stateSvc.close(); p.store.Store(nil); st.Close() }()
	defer p.releasePortHold()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := p.claims.open(); err != nil {
		return err
	}
	defer p.claims.close() // after the servers and Services stopped
	local := &http.Server{Handler: p.localHandler(), ReadHeaderTimeout: 10 * time.Second}
	local.RegisterOnShutdown(p.claims.endWaits) // fence long polls return at once
	node := &http.Server{Handler: p.nodeHandler(), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			return ca.ServerTLS(p.cert), nil
		}}, ErrorLog: slog.NewLogLogger(p.log.With("component", "node-api").Handler(), slog.LevelWarn)}
	wg.Add(2)
	go func() { defer wg.Done(); local.Serve(p.localLn) }()
	go func() { defer wg.Done(); node.ServeTLS(p.apiLn, "", "") }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		local.Shutdown(sctx)
		node.Shutdown(sctx)
		os.Remove(p.cfg.Socket)
	}()

	if !p.cfg.NoDiscovery {
		conn := p.cfg.Beacons
		if conn == nil {
			c, err := discovery.Listen(p.cfg.DiscoveryPort, p.cfg.DiscoveryInterfaces...)
			if err != nil {
				p.log.Warn("discovery is off: this node will neither form nor auto-join a cluster; use `shoal cluster create|join`", "err", err)
			} else {
				conn = c
			}
		}
		if conn != nil {
			p.mu.Lock()
			p.listening = p.now()
			p.mu.Unlock()
			ann := discovery.New(discovery.Config{Conn: conn, Interval: p.cfg.Timers.Beacon, Self: p.beacon, Log: p.log, Now: p.now})
			p.ann.Store(ann)
			wg.Add(1)
			go func() { defer wg.Done(); ann.Run(ctx) }()
		}
	}

	wg.Add(1)
	go func() { defer wg.Done(); p.eventLoop(ctx) }()

	p.mu.Lock()
	member := p.cl != nil
	p.mu.Unlock()
	if member {
		if err := p.startMembership(nil); err != nil {
			return err
		}
	}
	defer p.stopMembership(false)
	defer p.stopServices()

	p.log.Info("shoal peer running", "node_id", p.id.NodeID, "gossip", p.GossipAddr(), "api", p.APIAddr(), "socket", p.cfg.Socket, "phase", p.Phase())
	if p.cfg.Ready != nil {
		p.cfg.Ready()
	}
	t := time.NewTicker(p.cfg.Timers.Tick)
	defer t.Stop()
	var resync <-chan time.Time // armed by startMembership through resyncIn
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.tick(ctx)
		case d := <-p.resyncIn:
			resync = time.After(d)
		case <-resync:
			resync = nil
			if p.Phase() == client.PhaseMember {
				p.resync()
			}
		case <-p.memberNow:
			p.tick(ctx) // just became a member: start Services now, not on the next tick
		}
	}
}

// Phase returns unclaimed, joining or member.
func (p *Peer) Phase() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phase
}

// ClusterID returns the cluster's ID, empty while unclaimed.
func (p *Peer) ClusterID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cl == nil {
		return ""
	}
	return p.cl.ClusterID
}

func (p *Peer) tick(ctx context.Context) {
	switch p.Phase() {
	case client.PhaseUnclaimed:
		p.formOrJoin(ctx)
	case client.PhaseJoining:
		p.pollAdmission(ctx) // errors are logged
	case client.PhaseMember:
		p.startServices(ctx)
		p.heal(ctx)
	}
}

func (p *Peer) beacon() discovery.Beacon {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := discovery.Beacon{NodeID: p.id.NodeID, State: discovery.StateUnclaimed, Gossip: p.GossipAddr(), API: p.APIAddr(),
		Addrs: []string{p.bindIP.String()}, Version: p.cfg.Version, Hardware: p.cfg.Hardware}
	if p.cl != nil {
		b.State, b.ClusterID = discovery.StateMember, p.cl.ClusterID
	}
	return b
}

func (p *Peer) record(typ, node, detail string) {
	p.events.add(client.Event{Time: p.now().UTC(), Type: typ, NodeID: node, Detail: detail})
	p.stateEvent(typ, node, detail)
}

// adoptCluster makes cl this node's cluster (with p.mu held or before Run).
func (p *Peer) adoptCluster(cl *clusterState) error {
	c, err := ca.Parse([]byte(cl.CACert), []byte(cl.CAKey))
	if err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	cert, err := ca.KeyPair([]byte(cl.NodeCert), p.id.Key)
	if err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	if cert.Leaf.Subject.CommonName != p.id.NodeID {
		return fmt.Errorf("node certificate is for node %s, not this node %s", cert.Leaf.Subject.CommonName, p.id.NodeID)
	}
	if _, err := c.Verify(cert.Leaf, nil); err != nil {
		return fmt.Errorf("node certificate: %w", err)
	}
	p.cl, p.ca, p.cert, p.phase = cl, c, cert, client.PhaseMember
	select {
	case p.memberNow <- struct{}{}:
	default:
	}
	return nil
}

func (p *Peer) selfSign() error {
	cert, err := ca.SelfSigned(p.id.NodeID, p.id.Key, p.now())
	if err != nil {
		return err
	}
	p.cert = cert
	return nil
}

func sixDigits() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1000000))
	return fmt.Sprintf("%06d", n.Int64())
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// freePort finds a port free for both TCP and UDP on ip and keeps both
// sockets open: the caller closes them right before it binds the port
// itself, so no other socket takes it in between (tests run many nodes
// and packages at once).
func freePort(ip net.IP) (int, []io.Closer, error) {
	for range 20 {
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip})
		if err != nil {
			return 0, nil, fmt.Errorf("find a free port on %s: %w", ip, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: port})
		if err == nil {
			return port, []io.Closer{l, u}, nil
		}
		l.Close()
	}
	return 0, nil, errors.New("no port free for both TCP and UDP")
}

// releasePortHold closes the sockets that hold the gossip port chosen at
// New, if they are still open.
func (p *Peer) releasePortHold() {
	p.mu.Lock()
	hold := p.portHold
	p.portHold = nil
	p.mu.Unlock()
	for _, c := range hold {
		c.Close()
	}
}
