// Package peer is the node's membership and cluster state: its identity,
// gossip with the other nodes (serf on the backplane), discovery, formation
// and admission of nodes, the replicated CRDT state store, and claims (one
// owner of a resource without a leader). Other subsystems read and write
// cluster state through peer's client package, never through each other.
package peer
