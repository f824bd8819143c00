package peer

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newTestTransport(t *testing.T, blocked func(string) bool) *gossipTransport {
	t.Helper()
	tr, err := newGossipTransport(net.IPv4(127, 0, 0, 1), 0, blocked, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown() })
	return tr
}

func addrOf(tr *gossipTransport) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(tr.Port()))
}

func TestGossipTransportPackets(t *testing.T) {
	a, b := newTestTransport(t, nil), newTestTransport(t, nil)
	msgs := [][]byte{[]byte("x"), []byte("hello gossip"), make([]byte, 1400)}
	for _, m := range msgs {
		if _, err := a.WriteTo(m, addrOf(b)); err != nil {
			t.Fatalf("write: %v", err)
		}
		select {
		case p := <-b.PacketCh():
			if diff := cmp.Diff(m, p.Buf); diff != "" {
				t.Errorf("packet bytes (-sent +got):\n%s", diff)
			}
			if cap(p.Buf) != len(m) {
				t.Errorf("packet buffer holds %d bytes for a %d-byte packet: the read buffer leaked", cap(p.Buf), len(m))
			}
			if got := p.From.String(); got != addrOf(a) {
				t.Errorf("packet from %s, want %s", got, addrOf(a))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no packet received")
		}
	}
}

func TestGossipTransportStreams(t *testing.T) {
	a, b := newTestTransport(t, nil), newTestTransport(t, nil)
	c, err := a.DialTimeout(addrOf(b), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	select {
	case s := <-b.StreamCh():
		defer s.Close()
		c.Write([]byte("push/pull"))
		buf := make([]byte, 9)
		if _, err := s.Read(buf); err != nil || string(buf) != "push/pull" {
			t.Errorf("stream read %q, %v", buf, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no stream accepted")
	}
}

func TestGossipTransportBlocked(t *testing.T) {
	b, c := newTestTransport(t, nil), newTestTransport(t, nil)
	a := newTestTransport(t, func(addr string) bool { return addr == addrOf(b) }) // a and b are cut apart
	if _, err := a.WriteTo([]byte("lost"), addrOf(b)); err != nil {
		t.Errorf("a blocked write must look sent (lost on the wire): %v", err)
	}
	if _, err := a.DialTimeout(addrOf(b), time.Second); err == nil {
		t.Error("dial through a partition succeeded")
	}
	b.WriteTo([]byte("dropped"), addrOf(a)) // a drops what b sends
	c.WriteTo([]byte("from c"), addrOf(a))
	select {
	case p := <-a.PacketCh():
		if string(p.Buf) != "from c" {
			t.Errorf("a got %q first, want only the packet from c", p.Buf)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a got no packet from c")
	}
	select {
	case p := <-b.PacketCh():
		t.Errorf("b received %q sent across the partition", p.Buf)
	case <-time.After(100 * time.Millisecond): // a lost packet cannot be awaited; a short look suffices
	}
}

func TestGossipTransportAdvertise(t *testing.T) {
	tr := newTestTransport(t, nil)
	tests := []struct {
		ip       string
		port     int
		wantIP   string
		wantPort int
		wantErr  bool
	}{
		{"", 0, "127.0.0.1", tr.Port(), false},
		{"10.1.2.3", 7946, "10.1.2.3", 7946, false},
		{"fd53:686f:616c::1", 0, "fd53:686f:616c::1", tr.Port(), false},
		{"not-an-ip", 7946, "", 0, true},
	}
	for _, tt := range tests {
		ip, port, err := tr.FinalAdvertiseAddr(tt.ip, tt.port)
		if (err != nil) != tt.wantErr {
			t.Errorf("FinalAdvertiseAddr(%q, %d): err %v, want error %v", tt.ip, tt.port, err, tt.wantErr)
			continue
		}
		if err == nil && (ip.String() != tt.wantIP || port != tt.wantPort) {
			t.Errorf("FinalAdvertiseAddr(%q, %d) = %s, %d; want %s, %d", tt.ip, tt.port, ip, port, tt.wantIP, tt.wantPort)
		}
	}
}
