package discovery

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// Port is the discovery port.
const Port = 7947

// Multicast groups of the beacon.
var (
	GroupV6 = net.ParseIP("ff02::5348:6f61")
	GroupV4 = net.IPv4(239, 255, 83, 72)
)

// Listen joins the beacon groups on every up, multicast-capable,
// non-loopback interface (or only on the named ones) and returns a Conn
// that sends to all of them. port zero means Port.
func Listen(port int, ifnames ...string) (Conn, error) {
	if port == 0 {
		port = Port
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	u := &udpConn{in: make(chan []byte, 64), done: make(chan struct{})}
	want := map[string]bool{}
	for _, n := range ifnames {
		want[n] = true
	}
	for _, ifi := range ifs {
		if len(want) > 0 && !want[ifi.Name] {
			continue
		}
		if len(want) == 0 && (ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 || ifi.Flags&net.FlagLoopback != 0) {
			continue
		}
		ifi := ifi
		if c, err := net.ListenMulticastUDP("udp6", &ifi, &net.UDPAddr{IP: GroupV6, Port: port}); err == nil {
			u.add(c, &net.UDPAddr{IP: GroupV6, Port: port, Zone: ifi.Name})
		}
		if c, err := net.ListenMulticastUDP("udp4", &ifi, &net.UDPAddr{IP: GroupV4, Port: port}); err == nil {
			u.add(c, &net.UDPAddr{IP: GroupV4, Port: port})
		}
	}
	if len(u.socks) == 0 {
		return nil, errors.New("no interface to announce on: discovery needs an up, multicast-capable, non-loopback interface")
	}
	return u, nil
}

type udpConn struct {
	socks []*net.UDPConn
	dsts  []*net.UDPAddr
	in    chan []byte
	wg    sync.WaitGroup
	once  sync.Once
	done  chan struct{}
}

func (u *udpConn) add(c *net.UDPConn, dst *net.UDPAddr) {
	u.socks = append(u.socks, c)
	u.dsts = append(u.dsts, dst)
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		buf := make([]byte, MaxBeacon+1)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			select {
			case u.in <- append([]byte(nil), buf[:n]...):
			case <-u.done:
				return
			default:
			}
		}
	}()
}

func (u *udpConn) Send(p []byte) error {
	var errs []error
	for i, c := range u.socks {
		if _, err := c.WriteToUDP(p, u.dsts[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(u.socks) {
		return errors.Join(errs...)
	}
	return nil
}

func (u *udpConn) Recv(buf []byte) (int, error) {
	select {
	case p := <-u.in:
		return copy(buf, p), nil
	case <-u.done:
		return 0, net.ErrClosed
	}
}

func (u *udpConn) Close() error {
	u.once.Do(func() {
		close(u.done)
		for _, c := range u.socks {
			c.Close()
		}
		u.wg.Wait()
	})
	return nil
}
