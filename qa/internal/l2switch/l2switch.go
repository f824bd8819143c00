package l2switch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// AgeOut is how long a learned MAC address stays bound to a port without
// traffic from it.
const AgeOut = 30 * time.Second

// Switch forwards frames between ports.
type Switch struct {
	dir   string
	mu    sync.Mutex
	ports []*Port
	macs  map[[6]byte]learned
	now   func() time.Time
}

type learned struct {
	port *Port
	at   time.Time
}

// Port is one switch port, for one guest NIC.
type Port struct {
	Name string
	// Local is the switch's socket; Peer is QEMU's (which QEMU binds).
	Local, Peer string

	sw      *Switch
	conn    *net.UnixConn
	peer    *net.UnixAddr
	down    atomic.Bool
	delay   atomic.Int64
	group   atomic.Int64
	rx, tx  atomic.Uint64
	dropped atomic.Uint64
	wmu     sync.Mutex
}

// New makes a switch whose sockets live in dir (keep it short: UNIX
// socket paths are limited to 107 bytes).
func New(dir string) *Switch {
	return &Switch{dir: dir, macs: map[[6]byte]learned{}, now: time.Now}
}

// AddPort adds a port and binds its socket.
func (s *Switch) AddPort(name string) (*Port, error) {
	p := &Port{Name: name, sw: s, Local: filepath.Join(s.dir, "sw-"+name+".sock"), Peer: filepath.Join(s.dir, name+".sock")}
	if len(p.Peer) > 100 {
		return nil, fmt.Errorf("add port %q: socket path %q is too long for UNIX sockets: use a shorter dir", name, p.Peer)
	}
	os.Remove(p.Local)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p.Local, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("add port %q: %w", name, err)
	}
	p.conn = conn
	p.peer = &net.UnixAddr{Name: p.Peer, Net: "unixgram"}
	s.mu.Lock()
	s.ports = append(s.ports, p)
	s.mu.Unlock()
	return p, nil
}

// Netdev is the QEMU -netdev value for the port, with the given id.
func (p *Port) Netdev(id string) string {
	return fmt.Sprintf("dgram,id=%s,local.type=unix,local.path=%s,remote.type=unix,remote.path=%s", id, p.Peer, p.Local)
}

// SetDown drops every frame to and from the port (the carrier stays up).
func (p *Port) SetDown(down bool) { p.down.Store(down) }

// SetDelay delays frames leaving the switch through this port.
func (p *Port) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// SetGroup puts the port in a partition: frames pass only between ports
// of the same group (all start in group 0).
func (p *Port) SetGroup(g int) { p.group.Store(int64(g)) }

// Stats are a port's counters.
type Stats struct{ Received, Sent, Dropped uint64 }

// Stats returns the port's counters.
func (p *Port) Stats() Stats {
	return Stats{Received: p.rx.Load(), Sent: p.tx.Load(), Dropped: p.dropped.Load()}
}

// Run forwards frames until ctx ends, then closes the ports; it returns
// nil then.
func (s *Switch) Run(ctx context.Context) error {
	s.mu.Lock()
	ports := append([]*Port(nil), s.ports...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ports {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serve(p)
		}()
	}
	<-ctx.Done()
	for _, p := range ports {
		p.conn.Close()
	}
	wg.Wait()
	for _, p := range ports {
		os.Remove(p.Local)
	}
	return nil
}

func (s *Switch) serve(in *Port) {
	buf := make([]byte, 65536)
	for {
		n, _, err := in.conn.ReadFromUnix(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		in.rx.Add(1)
		if n < 14 || in.down.Load() {
			in.dropped.Add(1)
			continue
		}
		frame := append([]byte(nil), buf[:n]...)
		for _, out := range s.route(in, frame) {
			out.send(frame)
		}
	}
}

// route learns the source and picks the ports a frame goes out of.
func (s *Switch) route(in *Port, frame []byte) []*Port {
	var dst, src [6]byte
	copy(dst[:], frame[0:6])
	copy(src[:], frame[6:12])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if src[0]&1 == 0 {
		s.macs[src] = learned{port: in, at: now}
	}
	if dst[0] == 0x01 && dst[1] == 0x80 && dst[2] == 0xc2 && dst[3] == 0 && dst[4] == 0 && dst[5] <= 0x0f {
		// IEEE 802.1D reserved addresses (STP, LACP and other slow
		// protocols, LLDP): a bridge without those protocols drops them,
		// as a plain switch does; flooding LACPDUs would make bonds in
		// 802.3ad mode partner with each other across the switch.
		return nil
	}
	group := in.group.Load()
	if dst[0]&1 == 0 {
		if l, ok := s.macs[dst]; ok && now.Sub(l.at) < AgeOut {
			if l.port == in || l.port.group.Load() != group {
				return nil
			}
			return []*Port{l.port}
		}
	}
	var out []*Port
	for _, p := range s.ports {
		if p != in && p.group.Load() == group {
			out = append(out, p)
		}
	}
	return out
}

func (p *Port) send(frame []byte) {
	if p.down.Load() {
		p.dropped.Add(1)
		return
	}
	if d := time.Duration(p.delay.Load()); d > 0 {
		time.AfterFunc(d, func() { p.write(frame) })
		return
	}
	p.write(frame)
}

// write sends a frame to the port's guest without ever blocking: a UNIX
// datagram socket holds only a few frames (net.unix.max_dgram_qlen), and
// QEMU stops reading it while the guest's NIC cannot receive (a booting
// guest without its driver yet). A blocking send would stall the port's
// reader and, through broadcasts, the whole switch; a congested port
// drops instead, as a hardware switch does.
func (p *Port) write(frame []byte) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	rc, err := p.conn.SyscallConn()
	if err != nil {
		p.dropped.Add(1)
		return
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), frame, unix.MSG_DONTWAIT, &unix.SockaddrUnix{Name: p.peer.Name})
		return true // never wait for the socket to drain
	})
	if err != nil || serr != nil {
		p.dropped.Add(1) // QEMU not started yet, gone, or not reading
		return
	}
	p.tx.Add(1)
}
