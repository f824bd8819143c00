package l2switch

import (
	"bytes"
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// guest is one end a QEMU would hold: it binds the port's Peer path.
type guest struct {
	conn *net.UnixConn
	sw   *net.UnixAddr
	mac  []byte
}

func newGuest(t *testing.T, p *Port, mac byte) *guest {
	t.Helper()
	os.Remove(p.Peer)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p.Peer, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &guest{conn: c, sw: &net.UnixAddr{Name: p.Local, Net: "unixgram"}, mac: []byte{2, 0, 0, 0, 0, mac}}
}

func (g *guest) send(t *testing.T, dst []byte, payload string) {
	t.Helper()
	f := append(append(append([]byte{}, dst...), g.mac...), 0x88, 0xb5)
	f = append(f, payload...)
	if _, err := g.conn.WriteToUnix(f, g.sw); err != nil {
		t.Fatal(err)
	}
}

// recv returns the payload of the next frame, or "" after wait.
func (g *guest) recv(wait time.Duration) string {
	g.conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2000)
	n, _, err := g.conn.ReadFromUnix(buf)
	if err != nil {
		return ""
	}
	return string(buf[14:n])
}

var bcast = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// runSwitch runs a switch with three ports and a guest bound to each,
// until the test ends.
func runSwitch(t *testing.T) ([]*Port, []*guest) {
	t.Helper()
	dir, err := os.MkdirTemp("", "l2sw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sw := New(dir)
	var ports []*Port
	var guests []*guest
	for i, n := range []string{"a", "b", "c"} {
		p, err := sw.AddPort(n)
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, p)
		guests = append(guests, newGuest(t, p, byte(i+1)))
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sw.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ports, guests
}

func TestSwitch(t *testing.T) {
	ports, guests := runSwitch(t)
	a, b, c := guests[0], guests[1], guests[2]

	const short, long = 200 * time.Millisecond, 2 * time.Second

	// Broadcast floods; the reply is unicast to the learned port only.
	a.send(t, bcast, "hello")
	if got := b.recv(long); got != "hello" {
		t.Fatalf("b got %q, want the broadcast", got)
	}
	if got := c.recv(long); got != "hello" {
		t.Fatalf("c got %q, want the broadcast", got)
	}
	b.send(t, a.mac, "reply")
	if got := a.recv(long); got != "reply" {
		t.Fatalf("a got %q, want the reply", got)
	}
	if got := c.recv(short); got != "" {
		t.Errorf("c got %q: a learned unicast leaked", got)
	}

	// IEEE 802.1D reserved addresses (here LACP's) are not forwarded.
	a.send(t, []byte{0x01, 0x80, 0xc2, 0, 0, 0x02}, "lacp")
	if got := b.recv(short); got != "" {
		t.Errorf("b got %q: a slow-protocols frame was forwarded", got)
	}
	if got := c.recv(short); got != "" {
		t.Errorf("c got %q: a slow-protocols frame was forwarded", got)
	}

	// A downed port neither sends nor receives.
	ports[1].SetDown(true)
	a.send(t, b.mac, "lost")
	if got := b.recv(short); got != "" {
		t.Errorf("downed b got %q", got)
	}
	ports[1].SetDown(false)

	// Partitions: c alone in group 1 hears nothing from a.
	ports[2].SetGroup(1)
	a.send(t, bcast, "p")
	if got := b.recv(long); got != "p" {
		t.Errorf("b got %q, want p", got)
	}
	if got := c.recv(short); got != "" {
		t.Errorf("partitioned c got %q", got)
	}
	ports[2].SetGroup(0)

	// Delay: the frame arrives, late.
	ports[1].SetDelay(300 * time.Millisecond)
	start := time.Now()
	a.send(t, b.mac, "slow")
	if got := b.recv(long); got != "slow" {
		t.Errorf("delayed b got %q", got)
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("delayed frame took %v, want ≥ 300 ms", took)
	}
	if st := ports[1].Stats(); st.Dropped == 0 || st.Sent == 0 {
		t.Errorf("port b stats %+v: want drops and sends counted", st)
	}
	if !bytes.Contains([]byte(ports[0].Netdev("n0")), []byte("remote.path="+ports[0].Local)) {
		t.Errorf("netdev %q does not point QEMU at the switch socket", ports[0].Netdev("n0"))
	}
}

// A guest that never reads (QEMU while the guest's NIC has no driver
// yet) must not stall the switch: its port drops, the others carry on.
func TestSilentGuestDoesNotStallTheSwitch(t *testing.T) {
	ports, guests := runSwitch(t)
	a, b := guests[0], guests[1] // guests[2] never reads

	const frames = 100 // far more than a datagram socket queues
	got := 0
	for i := range frames {
		a.send(t, bcast, "f")
		if b.recv(2*time.Second) == "f" {
			got++
		} else {
			t.Fatalf("b stopped getting broadcasts after %d of %d: the silent guest stalled the switch", got, i+1)
		}
	}
	if st := ports[2].Stats(); st.Dropped == 0 {
		t.Errorf("the silent guest's port dropped nothing: %+v", st)
	}
}
