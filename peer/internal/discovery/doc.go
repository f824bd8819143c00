// Package discovery announces this node on the backplane and hears the
// others, with no configuration: a small JSON beacon sent every few seconds
// to a UDP multicast group (IPv6 link-local ff02::5348:6f61 and IPv4
// 239.255.83.72, port 7947) on every multicast-capable interface.
//
// Why a beacon and not mDNS/DNS-SD: the standard library is enough, the
// payload is ours (node ID, cluster ID, addresses, version, state), and the
// Go mDNS libraries have rough IPv6 edges (hashicorp/mdns #35, #121, #149)
// on exactly the link-local case the backplane relies on. Beacons are
// unauthenticated hints: they only decide whom to talk to; admission and
// gossip are authenticated separately.
//
// Concurrency: Run owns its goroutines and waits for them. The Table is
// safe for concurrent use. Conn implementations: UDP (Listen) and an
// in-process Hub for tests.
package discovery
