// Package peer is the node's membership and cluster state: its identity,
// gossip with the other nodes (serf on the backplane), discovery, formation
// and admission of nodes, the replicated CRDT state store, and claims (one
// owner of a resource without a leader). Other subsystems read and write
// cluster state through peer's client package, never through each other.
//
// A Peer (New, then Run) is one node's `shoal peer` daemon:
//
//   - identity: node ID and ed25519 key in DataDir/identity.json, made once.
//   - discovery: a multicast beacon (peer/internal/discovery) saying who
//     this node is and which cluster it is in, if any.
//   - formation: unclaimed nodes that see FormQuorum unclaimed nodes
//     (counting themselves) with no change for Timers.Settle form a
//     cluster; the lowest node ID creates the cluster ID, CA and gossip key
//     and admits the others. Formed clusters never merge by themselves: an
//     unclaimed node auto-joins only when it hears exactly one cluster, and
//     a member lists other clusters it hears as foreign.
//   - admission: over HTTPS on the node API, policies auto, approve, code;
//     the admitted node gets the CA (key included: any member can admit),
//     its certificate and the gossip keyring.
//   - membership: serf with encrypted gossip, bounded push/pull, reaping;
//     a merge delegate refuses nodes of other clusters and removed nodes.
//     Joins are paced (joinDelay), and every tick heal joins members heard
//     on the backplane that gossip has missed for Timers.HealGrace
//     (missingMembers); timers and retransmissions depend on the cluster
//     size a node expects when its gossip starts (GossipConfig).
//   - APIs: local HTTP on a UNIX socket (peer/client), node-to-node HTTPS
//     with mutual TLS (Service is the seam for state replication, claims).
//   - claims (claimsvc.go, claimlocal.go; docs/claims.md): a claim.Node
//     over DataDir/claims.db, its acceptor served as the Service "claim";
//     voters are the admitted members not removed or left, persisted in
//     DataDir/claim-voters.json so that a restart never shrinks them; the
//     fence is in Status and long-polled by local subscribers (/v1/fence).
//
// Invariants: a node is in at most one cluster; its cluster state
// (DataDir/cluster.json, keyring.json) is written atomically before it
// acts as a member; a revoked node ID is never admitted again and its
// certificate is refused by every member-only node API call and by the
// client side of every mutual-TLS call.
//
// Caveats: every member holds the CA key (leaderless admission); a
// joining node learns the CA from the member it asks (trust on first use
// on the private backplane). Cluster settings (policy, revocations) live
// in cluster.json, spread by serf user events and a periodic mTLS pull,
// until the state store carries them. Membership events are kept in
// memory (last 1000, `shoal node events`) and recorded as event records in
// the cluster state (member.<type>, with retention). A pending node waits at the member it asked; status
// gathers pending nodes from every member.
//
// Concurrency: Run owns every goroutine it starts and waits for them;
// Peer's methods are safe for concurrent use (one mutex guards the node's
// state; serf calls are made without holding it).
package peer
