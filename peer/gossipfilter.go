package peer

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// filterTransport is memberlist's network transport with a drop filter:
// packets and connections to or from addresses for which blocked returns
// true are lost, as in a network partition. Used only when
// Config.GossipBlocked is set (tests).
type filterTransport struct {
	*memberlist.NetTransport
	blocked func(addr string) bool
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

var errPartitioned = errors.New("dropped by the test partition filter")

func newFilterTransport(nt *memberlist.NetTransport, blocked func(string) bool) *filterTransport {
	t := &filterTransport{NetTransport: nt, blocked: blocked, packets: make(chan *memberlist.Packet, 256),
		streams: make(chan net.Conn, 16), done: make(chan struct{})}
	t.wg.Add(2)
	go func() {
		defer t.wg.Done()
		for {
			select {
			case p := <-nt.PacketCh():
				if p.From != nil && blocked(p.From.String()) {
					continue
				}
				select {
				case t.packets <- p:
				case <-t.done:
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	go func() {
		defer t.wg.Done()
		for {
			select {
			case c := <-nt.StreamCh():
				if blocked(c.RemoteAddr().String()) {
					c.Close()
					continue
				}
				select {
				case t.streams <- c:
				case <-t.done:
					c.Close()
					return
				}
			case <-t.done:
				return
			}
		}
	}()
	return t
}

func (t *filterTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }
func (t *filterTransport) StreamCh() <-chan net.Conn           { return t.streams }

func (t *filterTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.blocked(addr) {
		return time.Now(), nil // lost on the wire
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *filterTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *filterTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.blocked(addr) {
		return nil, errPartitioned
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

func (t *filterTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

func (t *filterTransport) Shutdown() error {
	err := t.NetTransport.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}
