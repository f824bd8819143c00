package peer

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipTransport carries memberlist's packets (UDP) and streams (TCP) on
// one address and port. It differs from memberlist's NetTransport in one
// way that matters at scale: NetTransport allocates and zeroes a fresh
// 64 KiB buffer for every packet it receives, which at a few hundred
// members is a large share of gossip's CPU and of the garbage collector's
// work; this transport reads into one buffer per socket and hands
// memberlist a copy of only the bytes received.
//
// When blocked is set (tests: Config.GossipBlocked), packets and
// connections to or from addresses for which it returns true are lost, as
// in a network partition.
type gossipTransport struct {
	udp     *net.UDPConn
	tcp     *net.TCPListener
	blocked func(addr string) bool // nil: nothing is blocked
	log     *log.Logger
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	closed  atomic.Bool
	once    sync.Once
	wg      sync.WaitGroup
}

const (
	gossipPacketMax = 65536   // largest UDP payload
	gossipRecvBuf   = 2 << 20 // socket receive buffer asked for (halved until the kernel accepts)
)

var errPartitioned = errors.New("dropped by the test partition filter")

// newGossipTransport listens on ip:port for TCP and UDP (port 0: a port
// free for both). blocked may be nil.
func newGossipTransport(ip net.IP, port int, blocked func(string) bool, logger *log.Logger) (*gossipTransport, error) {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	var tcp *net.TCPListener
	var udp *net.UDPConn
	var err error
	for range 10 {
		tcp, err = net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: port})
		if err != nil {
			return nil, fmt.Errorf("listen gossip tcp on %s: %w", net.JoinHostPort(ip.String(), strconv.Itoa(port)), err)
		}
		bound := tcp.Addr().(*net.TCPAddr).Port
		udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: bound})
		if err == nil {
			break
		}
		tcp.Close()
		if port != 0 {
			return nil, fmt.Errorf("listen gossip udp on %s: %w", net.JoinHostPort(ip.String(), strconv.Itoa(port)), err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("find a port free for gossip tcp and udp on %s: %w", ip, err)
	}
	for size := gossipRecvBuf; size > 0; size /= 2 {
		if udp.SetReadBuffer(size) == nil {
			break
		}
	}
	t := &gossipTransport{udp: udp, tcp: tcp, blocked: blocked, log: logger,
		packets: make(chan *memberlist.Packet), streams: make(chan net.Conn), done: make(chan struct{})}
	t.wg.Add(2)
	go t.readPackets()
	go t.acceptStreams()
	return t, nil
}

// Port is the port the transport listens on.
func (t *gossipTransport) Port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

func (t *gossipTransport) isBlocked(addr string) bool { return t.blocked != nil && t.blocked(addr) }

func (t *gossipTransport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, gossipPacketMax)
	for {
		n, from, err := t.udp.ReadFromUDPAddrPort(buf)
		ts := time.Now()
		if err != nil {
			if t.closed.Load() {
				return
			}
			t.log.Printf("[ERR] shoal: read gossip packet: %v", err)
			continue
		}
		if n < 1 {
			continue
		}
		addr := net.UDPAddrFromAddrPort(from)
		if t.isBlocked(addr.String()) {
			continue
		}
		b := make([]byte, n)
		copy(b, buf[:n])
		select {
		case t.packets <- &memberlist.Packet{Buf: b, From: addr, Timestamp: ts}:
		case <-t.done:
			return
		}
	}
}

func (t *gossipTransport) acceptStreams() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.closed.Load() {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Printf("[ERR] shoal: accept gossip connection: %v", err)
			select {
			case <-time.After(delay):
			case <-t.done:
				return
			}
			continue
		}
		delay = 0
		if t.isBlocked(c.RemoteAddr().String()) {
			c.Close()
			continue
		}
		select {
		case t.streams <- c:
		case <-t.done:
			c.Close()
			return
		}
	}
}

// FinalAdvertiseAddr implements memberlist.Transport: the advertised
// address when given, else the bound one.
func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		a := t.tcp.Addr().(*net.TCPAddr)
		return a.IP, a.Port, nil
	}
	a := net.ParseIP(ip)
	if a == nil {
		return nil, 0, fmt.Errorf("advertise address %q is not an IP address", ip)
	}
	if a4 := a.To4(); a4 != nil {
		a = a4
	}
	if port == 0 {
		port = t.Port()
	}
	return a, port, nil
}

// WriteTo implements memberlist.Transport.
func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.isBlocked(addr) {
		return time.Now(), nil // lost on the wire
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", addr)
		if rerr != nil {
			return time.Time{}, fmt.Errorf("gossip address %q: %w", addr, rerr)
		}
		ap = ua.AddrPort()
	}
	_, err = t.udp.WriteToUDPAddrPort(b, ap)
	return time.Now(), err
}

// PacketCh implements memberlist.Transport.
func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout implements memberlist.Transport.
func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.isBlocked(addr) {
		return nil, errPartitioned
	}
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", addr)
}

// StreamCh implements memberlist.Transport.
func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown implements memberlist.Transport: closes the sockets and waits
// for the transport's goroutines.
func (t *gossipTransport) Shutdown() error {
	t.closed.Store(true)
	t.once.Do(func() { close(t.done) })
	err := errors.Join(t.tcp.Close(), t.udp.Close())
	t.wg.Wait()
	return err
}
