package dhcpc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// RFC 3927 §9 timings.
const (
	probeWait    = time.Second
	probeNum     = 3
	probeMin     = time.Second
	probeMax     = 2 * time.Second
	announceWait = 2 * time.Second
	maxConflicts = 10
)

// ClaimLinkLocal picks an IPv4 link-local address for the interface
// (seeded by its MAC, so a node tends to get the same one), probes it with
// ARP and returns it once no other host claims it; the caller installs it.
// It takes 3 to 7 s (the RFC's timings), more after conflicts.
func ClaimLinkLocal(ctx context.Context, iface string) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(ifi.HardwareAddr) != 6 {
		return netip.Addr{}, fmt.Errorf("%s has no Ethernet address", iface)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(etherARP)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("open ARP socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(etherARP), Ifindex: ifi.Index}); err != nil {
		return netip.Addr{}, fmt.Errorf("bind ARP socket to %s: %w", iface, err)
	}
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return netip.Addr{}, err
	}
	h := fnv.New64a()
	h.Write(ifi.HardwareAddr)
	rng := rand.New(rand.NewPCG(h.Sum64(), 3927))
	dst := &unix.SockaddrLinklayer{Protocol: htons(etherARP), Ifindex: ifi.Index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	send := func(p arpPacket) error { return unix.Sendto(fd, marshalARP(p), 0, dst) }
	zero := netip.AddrFrom4([4]byte{})
	for conflict := 0; ; conflict++ {
		cand := linkLocalCandidate(rng.Uint64())
		if conflict >= maxConflicts {
			// RFC 3927 §2.2.1: rate-limit after many conflicts.
			if err := waitARP(ctx, fd, time.Minute, nil); err != nil {
				return netip.Addr{}, err
			}
		}
		seen := func(p arpPacket) bool { return conflicts(p, ifi.HardwareAddr, cand) }
		clash := false
		if err := waitARP(ctx, fd, time.Duration(rng.Int64N(int64(probeWait))), nil); err != nil {
			return netip.Addr{}, err
		}
		for i := 0; i < probeNum && !clash; i++ {
			if err := send(arpPacket{Op: arpRequest, SenderHW: ifi.HardwareAddr, SenderIP: zero, TargetHW: make(net.HardwareAddr, 6), TargetIP: cand}); err != nil {
				return netip.Addr{}, fmt.Errorf("send ARP probe: %w", err)
			}
			wait := probeMin + time.Duration(rng.Int64N(int64(probeMax-probeMin)))
			if i == probeNum-1 {
				wait = announceWait
			}
			if err := waitARP(ctx, fd, wait, seen); errors.Is(err, errConflict) {
				clash = true
			} else if err != nil {
				return netip.Addr{}, err
			}
		}
		if clash {
			continue
		}
		for range 2 {
			send(arpPacket{Op: arpRequest, SenderHW: ifi.HardwareAddr, SenderIP: cand, TargetHW: make(net.HardwareAddr, 6), TargetIP: cand})
		}
		return cand, nil
	}
}

var errConflict = errors.New("address in use")

// waitARP reads ARP frames for d, returning errConflict if seen matches one.
func waitARP(ctx context.Context, fd int, d time.Duration, seen func(arpPacket) bool) error {
	end := time.Now().Add(d)
	buf := make([]byte, 1500)
	for time.Now().Before(end) {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("read ARP: %w", err)
		}
		if p, err := parseARP(buf[:n]); err == nil && seen != nil && seen(p) {
			return errConflict
		}
	}
	return nil
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
