// Package l2switch is a userspace Ethernet switch for QEMU guests: each
// port is a pair of UNIX datagram sockets matching QEMU's
// `-netdev dgram,local.type=unix,...,remote.type=unix,...` (one frame per
// datagram), so guests share an L2 segment without root, taps or
// bridges. It learns MAC addresses (and forgets them after AgeOut), floods
// unknown and broadcast frames, drops frames to the IEEE 802.1D reserved
// addresses 01:80:c2:00:00:0x (STP, LACP, LLDP) as a plain switch does,
// and can drop, delay or partition traffic per port to inject faults that
// QMP set_link cannot (a dead link whose carrier stays up).
//
// Concurrency: Run owns one reader goroutine per port and waits for them;
// the fault knobs (SetDown, SetDelay, SetGroup) are safe to call from any
// goroutine while it runs. Ports are added before Run.
package l2switch
