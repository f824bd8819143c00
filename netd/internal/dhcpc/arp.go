package dhcpc

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
)

// An ARP packet for IPv4 over Ethernet (RFC 826), inside its Ethernet
// frame: what RFC 3927 probing needs.
type arpPacket struct {
	Op       uint16 // 1 request, 2 reply
	SenderHW net.HardwareAddr
	SenderIP netip.Addr
	TargetHW net.HardwareAddr
	TargetIP netip.Addr
}

const (
	arpRequest = 1
	arpReply   = 2
	etherARP   = 0x0806
	arpFrame   = 14 + 28
)

var errNotARP = errors.New("not an IPv4-over-Ethernet ARP frame")

// marshalARP builds the Ethernet frame (broadcast) carrying p.
func marshalARP(p arpPacket) []byte {
	b := make([]byte, arpFrame)
	copy(b[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(b[6:12], p.SenderHW)
	binary.BigEndian.PutUint16(b[12:14], etherARP)
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)      // Ethernet
	binary.BigEndian.PutUint16(a[2:4], 0x0800) // IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], p.Op)
	copy(a[8:14], p.SenderHW)
	s4 := p.SenderIP.As4()
	copy(a[14:18], s4[:])
	copy(a[18:24], p.TargetHW)
	t4 := p.TargetIP.As4()
	copy(a[24:28], t4[:])
	return b
}

// parseARP decodes an Ethernet frame holding an ARP packet.
func parseARP(b []byte) (arpPacket, error) {
	if len(b) < arpFrame || binary.BigEndian.Uint16(b[12:14]) != etherARP {
		return arpPacket{}, errNotARP
	}
	a := b[14:]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != 0x0800 || a[4] != 6 || a[5] != 4 {
		return arpPacket{}, errNotARP
	}
	return arpPacket{
		Op:       binary.BigEndian.Uint16(a[6:8]),
		SenderHW: net.HardwareAddr(append([]byte(nil), a[8:14]...)),
		SenderIP: netip.AddrFrom4([4]byte(a[14:18])),
		TargetHW: net.HardwareAddr(append([]byte(nil), a[18:24]...)),
		TargetIP: netip.AddrFrom4([4]byte(a[24:28])),
	}, nil
}

// conflicts reports whether a received ARP packet shows that another host
// uses (or probes for) candidate, per RFC 3927 §2.2.1.
func conflicts(p arpPacket, own net.HardwareAddr, candidate netip.Addr) bool {
	if p.SenderHW.String() == own.String() {
		return false
	}
	if p.SenderIP == candidate {
		return true
	}
	return p.Op == arpRequest && p.SenderIP.IsUnspecified() && p.TargetIP == candidate
}

// linkLocalCandidate maps a seed to an address in 169.254.1.0 to
// 169.254.254.255, the range RFC 3927 §2.1 allows.
func linkLocalCandidate(seed uint64) netip.Addr {
	n := seed % (254 * 256)
	return netip.AddrFrom4([4]byte{169, 254, byte(1 + n/256), byte(n % 256)})
}
