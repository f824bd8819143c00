package scribe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shoal-hci/shoal/peer"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/chunksvc"
	"github.com/shoal-hci/shoal/scribe/internal/disks"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// Scribe is the `shoal scribe` daemon of one node.
type Scribe struct {
	cfg  Config
	peer *client.Client

	// mu guards st, set once storage is up.
	mu sync.Mutex
	st *storage

	// vmu serialises opening and closing VSDs; open is guarded by it.
	vmu  sync.Mutex
	open map[string]*openVSD

	// fenced: this node cannot hear a majority; open VSDs refuse I/O.
	fenced atomic.Bool
}

// storage is what runs once the node is a member.
type storage struct {
	nodeID    string
	clusterID string
	creds     *peer.NodeTLS
	disks     []*disks.Disk
	reg       *genreg.Dir // the generation register (also the fence epochs)
	pool      *pool
	addr      string // advertised chunk service address
	published map[string]string
	reclaimed map[string]bool // removed VSD IDs whose chunks are freed here
}

// New returns the daemon for cfg.
func New(cfg Config) (*Scribe, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Scribe{cfg: cfg, peer: client.New(cfg.PeerSocket), open: map[string]*openVSD{}}, nil
}

// Run serves until ctx ends, then closes every VSD, stops the servers,
// syncs and closes the disks, and returns nil. It returns an error only
// when a server cannot start.
func (s *Scribe) Run(ctx context.Context) error {
	log := s.cfg.Log
	ln, err := listenUnix(s.cfg.NBDSocket)
	if err != nil {
		return err
	}
	srv, err := nbd.New(nbd.Config{Logger: log.With("part", "nbd"), Resolver: s})
	if err != nil {
		ln.Close()
		return err
	}
	nbdCtx, stopNBD := context.WithCancel(context.WithoutCancel(ctx))
	nbdDone := make(chan error, 1)
	go func() { nbdDone <- srv.Serve(nbdCtx, ln) }()

	chunkCtx, stopChunks := context.WithCancel(context.WithoutCancel(ctx))
	var chunkWG sync.WaitGroup
	var runErr error
	defer func() {
		// NBD first: its sessions release their VSDs (flushing through
		// the local stores and the other nodes), then the chunk
		// service, then the disks.
		stopNBD()
		if err := <-nbdDone; err != nil && runErr == nil {
			runErr = err
		}
		os.Remove(s.cfg.NBDSocket)
		stopChunks()
		chunkWG.Wait()
		if st := s.storage(); st != nil {
			st.pool.close()
			for _, d := range st.disks {
				if err := d.Close(); err != nil {
					log.Error("close data disk", "disk", d.Path, "err", err)
				}
			}
			if err := st.reg.Close(); err != nil {
				log.Error("close the generation register", "err", err)
			}
		}
	}()

	if err := s.waitPeer(ctx); err != nil {
		return nil // cancelled
	}
	fenceCtx, stopFence := context.WithCancel(ctx)
	fenceDone := make(chan struct{})
	go func() { defer close(fenceDone); s.watchFence(fenceCtx) }()
	defer func() { stopFence(); <-fenceDone }()
	log.Info("serving NBD", "socket", s.cfg.NBDSocket)
	if s.cfg.Ready != nil {
		s.cfg.Ready()
	}
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	warned := false
	for {
		if s.storage() == nil {
			st, err := s.startStorage(ctx, chunkCtx, &chunkWG)
			switch {
			case err == nil:
				s.mu.Lock()
				s.st = st
				s.mu.Unlock()
			case errors.Is(err, ErrNotMember):
				if !warned {
					log.Info("waiting for this node to join a cluster before serving storage")
					warned = true
				}
			default:
				if ctx.Err() != nil {
					return runErr
				}
				log.Error("start storage (retrying)", "err", err)
			}
		}
		if st := s.storage(); st != nil {
			s.refresh(ctx, st)
		}
		select {
		case <-ctx.Done():
			return runErr
		case nbdErr := <-nbdDone:
			nbdDone <- nil
			return fmt.Errorf("nbd server stopped: %w", nbdErr)
		case <-t.C:
		}
	}
}

func (s *Scribe) storage() *storage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// listenUnix listens on path, replacing a stale socket left by a crash.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("nbd socket dir: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("nbd socket %q exists and is not a socket: move it away", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("nbd socket %q is in use: is another `shoal scribe` running?", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on nbd socket: %w", err)
	}
	return ln, nil
}

// waitPeer waits until shoal peer answers; it fails only when ctx ends.
func (s *Scribe) waitPeer(ctx context.Context) error {
	warned := false
	for {
		if _, err := s.peer.Status(ctx); err == nil {
			return nil
		} else if !warned && ctx.Err() == nil {
			s.cfg.Log.Info("waiting for shoal peer", "socket", s.cfg.PeerSocket, "err", err)
			warned = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.cfg.Interval / 4):
		}
	}
}

// startStorage runs once the node is a member: it loads the node's
// credentials, opens (and formats) the data disks, starts the chunk
// service and publishes the node's record.
func (s *Scribe) startStorage(ctx, chunkCtx context.Context, wg *sync.WaitGroup) (*storage, error) {
	log := s.cfg.Log
	status, err := s.peer.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("ask shoal peer: %w", err)
	}
	if status.Phase != client.PhaseMember {
		return nil, ErrNotMember
	}
	creds, err := peer.LoadNodeTLS(s.cfg.DataDir)
	if errors.Is(err, peer.ErrNotMember) {
		return nil, ErrNotMember
	}
	if err != nil {
		return nil, err
	}
	if creds.NodeID != status.Self.ID {
		return nil, fmt.Errorf("the data dir %s holds node %s but shoal peer is node %s: give both the same --data-dir", s.cfg.DataDir, creds.NodeID, status.Self.ID)
	}
	globs := s.cfg.DiskGlobs
	ds, probs, err := disks.Open(ctx, disks.Config{
		Globs: globs, NodeID: idOf(creds.NodeID), ClusterID: idOf(creds.ClusterID),
		ForceFormat: s.cfg.ForceFormat, Buffered: s.cfg.Buffered, NoUring: s.cfg.NoUring, Log: log.With("part", "disks"),
	})
	if err != nil {
		return nil, err
	}
	for _, p := range probs {
		log.Error("data disk not used: fix or replace it, or list it in --force-format to erase it", "disk", p.Path, "err", p.Err)
	}
	stores := make([]*chunkstore.Store, len(ds))
	for i, d := range ds {
		stores[i] = d.Store
	}
	reg, err := genreg.Open(filepath.Join(s.cfg.StateDir, "register"))
	if err != nil {
		for _, d := range ds {
			d.Close()
		}
		return nil, err
	}
	local := chunksvc.Local(stores).WithRegister(reg)
	// The stores keep their allocation fence in memory: restore it from
	// the epochs the register kept, before serving anyone.
	if err := local.FenceFromRegister(ctx); err != nil {
		log.Error("restore the VSD fences from the generation register", "err", err)
	}
	st := &storage{
		nodeID: creds.NodeID, clusterID: creds.ClusterID, creds: creds, disks: ds, reg: reg, reclaimed: map[string]bool{},
		pool: &pool{
			self: creds.NodeID, local: local, localDisks: ds,
			tls: creds.ClientTLS(), dialTimeout: s.cfg.DialTimeout, now: s.cfg.Now,
			conns: map[string]*conn{},
		},
	}
	fail := func(err error) (*storage, error) {
		for _, d := range ds {
			d.Close()
		}
		reg.Close()
		return nil, err
	}
	// Every node serves the chunk service, a node without disks (a
	// witness) for the generation register only.
	{
		srv, err := chunksvc.NewServer(chunksvc.ServerConfig{
			Stores: stores, Register: reg, TLS: creds.ServerTLS(), Authorize: creds.Verify, Log: log.With("part", "chunksvc"),
		})
		if err != nil {
			return fail(err)
		}
		ln, err := net.Listen("tcp", s.cfg.ChunkListen)
		if err != nil {
			return fail(fmt.Errorf("chunk service: %w", err))
		}
		st.addr = s.cfg.Advertise
		if st.addr == "" {
			host, _, err := net.SplitHostPort(status.Self.Gossip)
			if err != nil || host == "" {
				ln.Close()
				return fail(fmt.Errorf("this node's gossip address %q has no host to advertise the chunk service on: set the advertise address", status.Self.Gossip))
			}
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			st.addr = net.JoinHostPort(host, port)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(chunkCtx, ln); err != nil {
				log.Error("chunk service stopped", "err", err)
			}
		}()
		log.Info("chunk service up", "listen", ln.Addr().String(), "advertise", st.addr, "disks", len(ds))
	}
	if len(ds) == 0 {
		log.Warn("no data disks: this node stores no chunks, only the generation register (a witness, or disks to add)")
	}
	if err := s.publishNode(ctx, st); err != nil {
		log.Warn("publish this node's scribe record (will retry)", "err", err)
	}
	if err := s.refreshPool(ctx, st); err != nil {
		log.Warn("read the other nodes' records (will retry)", "err", err)
	}
	s.clearStaleStatuses(ctx, st)
	return st, nil
}

// publishNode writes this node's record when it changed.
func (s *Scribe) publishNode(ctx context.Context, st *storage) error {
	rec := NodeRecord{Node: st.nodeID, Addr: st.addr, Disks: []DiskInfo{}}
	for _, d := range st.disks {
		rec.Disks = append(rec.Disks, DiskInfo{ID: d.ID(), Path: d.Path, Size: d.Size(), Free: d.Free()})
	}
	f := rec.Fields()
	if st.published != nil && f["addr"] == st.published["addr"] && f["disks"] == st.published["disks"] {
		return nil
	}
	if _, err := s.peer.PutState(ctx, NodePrefix+st.nodeID, f); err != nil {
		return err
	}
	st.published = f
	return nil
}

// refresh is one control-loop round once storage runs.
func (s *Scribe) refresh(ctx context.Context, st *storage) {
	log := s.cfg.Log
	s.reclaim(ctx, st)
	if err := s.publishNode(ctx, st); err != nil && ctx.Err() == nil {
		log.Warn("publish this node's scribe record", "err", err)
	}
	if err := s.refreshPool(ctx, st); err != nil && ctx.Err() == nil {
		log.Warn("refresh the view of other nodes", "err", err)
	}
	s.publishStatuses(ctx)
}

// refreshPool reloads the other nodes' records and membership.
func (s *Scribe) refreshPool(ctx context.Context, st *storage) error {
	l, err := s.peer.ListState(ctx, NodePrefix)
	if err != nil {
		return err
	}
	members, err := s.peer.Nodes(ctx)
	if err != nil {
		return err
	}
	var recs []NodeRecord
	for _, r := range l.Records {
		nr, err := ParseNode(r)
		if err != nil {
			s.cfg.Log.Warn("skip scribe record", "err", err)
			continue
		}
		recs = append(recs, nr)
	}
	st.pool.update(recs, members)
	return nil
}
