package dhcpc

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestARPRoundTrip(t *testing.T) {
	p := arpPacket{Op: arpRequest, SenderHW: net.HardwareAddr{2, 0, 0, 0, 0, 1}, SenderIP: netip.MustParseAddr("0.0.0.0"),
		TargetHW: net.HardwareAddr{0, 0, 0, 0, 0, 0}, TargetIP: netip.MustParseAddr("169.254.3.4")}
	got, err := parseARP(marshalARP(p))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p.SenderIP, got.SenderIP, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Error(diff)
	}
	if got.TargetIP != p.TargetIP || got.Op != p.Op || got.SenderHW.String() != p.SenderHW.String() {
		t.Errorf("round trip: got %+v, want %+v", got, p)
	}
}

func TestConflicts(t *testing.T) {
	own := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	other := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	cand := netip.MustParseAddr("169.254.3.4")
	zero := netip.MustParseAddr("0.0.0.0")
	tests := []struct {
		name string
		p    arpPacket
		want bool
	}{
		{"other host has it", arpPacket{Op: arpReply, SenderHW: other, SenderIP: cand, TargetIP: zero}, true},
		{"other host probes it", arpPacket{Op: arpRequest, SenderHW: other, SenderIP: zero, TargetIP: cand}, true},
		{"our own probe", arpPacket{Op: arpRequest, SenderHW: own, SenderIP: zero, TargetIP: cand}, false},
		{"unrelated", arpPacket{Op: arpRequest, SenderHW: other, SenderIP: netip.MustParseAddr("169.254.9.9"), TargetIP: netip.MustParseAddr("169.254.9.1")}, false},
	}
	for _, tt := range tests {
		if got := conflicts(tt.p, own, cand); got != tt.want {
			t.Errorf("%s: conflicts = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLinkLocalCandidateRange(t *testing.T) {
	for _, seed := range []uint64{0, 1, 255, 256, 254*256 - 1, 254 * 256, 1<<64 - 1} {
		a := linkLocalCandidate(seed).As4()
		if a[0] != 169 || a[1] != 254 || a[2] < 1 || a[2] > 254 {
			t.Errorf("seed %d: %v outside 169.254.1.0-169.254.254.255", seed, a)
		}
	}
}

func FuzzParseARP(f *testing.F) {
	f.Add(marshalARP(arpPacket{Op: arpReply, SenderHW: net.HardwareAddr{1, 2, 3, 4, 5, 6}, SenderIP: netip.MustParseAddr("169.254.1.1"),
		TargetHW: net.HardwareAddr{6, 5, 4, 3, 2, 1}, TargetIP: netip.MustParseAddr("169.254.1.2")}))
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseARP(b)
		if err != nil {
			return
		}
		again, err := parseARP(marshalARP(p))
		if err != nil || again.SenderIP != p.SenderIP || again.TargetIP != p.TargetIP || again.Op != p.Op {
			t.Fatalf("re-parse of %+v gave %+v, %v", p, again, err)
		}
	})
}
