// Package claim gives one owner to a resource without a leader: a claim is
// a holder decided for (resource, epoch) by a majority of the cluster's
// voters, with single-decree Paxos per (resource, epoch) (docs/claims.md).
//
// Pieces:
//   - Acceptor answers Prepare, Accept and Read over a Store (BoltStore on a
//     node: every change is committed with fsync before the answer).
//   - Proposal is the proposer as a pure state machine (no I/O, no time);
//     Node drives it over a Transport, and so does the simulation in
//     peer/internal/claimsim.
//   - Fence declares the node fenced when it has not heard from a majority
//     of voters within FenceAfter; Node refuses to propose while fenced.
//   - Node bundles them for the daemon: Propose, ClaimNext, Read, Local,
//     Run (the probe loop that feeds the fence), and Handler, the RPCs
//     other voters call (HTTPTransport is the matching client).
//
// Invariants:
//   - Safety: at most one holder is ever decided for a (resource, epoch).
//     An acceptor accepts at most one holder per (resource, epoch), and a
//     proposer proposes the highest-ballot value already accepted in the
//     majority that promised it.
//   - Supersession: an acceptor refuses every request for an epoch below
//     the highest it promised or accepted for that resource. Once a
//     majority has seen epoch e', no proposal for e < e' that starts later
//     can win.
//   - Ballots are unique: (round, node, incarnation), the incarnation drawn
//     at random per process so a restart never reuses a ballot.
//   - Voters are given by the caller; the majority is len/2+1 of them.
//     Changing them one node at a time keeps every old and new majority
//     intersecting; changing two at once does not (see docs/claims.md).
//     VotersSettled tells the caller when no Propose or Read started on an
//     older set is still running (the daemon waits for it on every voter
//     before the next change); Config.OnDecided reports decided claims (the
//     daemon records holders in the cluster state with it).
//
// Concurrency: Acceptor, Fence and Node are safe for concurrent use; an
// Acceptor handles one request at a time. Proposal is not. Node.Run owns
// the probe goroutines and waits for them. Propose and Read return as soon
// as a majority answered; requests still in flight are cancelled and owned
// by the Node, whose Close waits for them.
//
// Caveats: round timers and back-off use the injected Clock, but context
// deadlines (ProposeTimeout, ping timeouts) use the runtime clock: tests of
// Node run inside testing/synctest. Liveness under duelling proposers rests
// on random back-off, as in any Paxos.
package claim
