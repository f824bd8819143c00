// Package replicate spreads changes of the state store (package
// statestore) between nodes: eager push of newly applied changes to a few
// random peers, periodic pull from one random peer by version vector, and
// chunked snapshot transfer for a peer behind a compacted log or marked
// for resync. It is protocol logic over a small Transport; MemNetwork is
// an in-memory transport with loss, duplication, delay, reordering and
// partitions for tests and benchmarks.
//
// Invariants:
//   - Writes never wait for the network: they go to the store; a pusher
//     goroutine sends them later, at most one push in flight per peer and
//     a few queued behind it; beyond that a push to a busy (slow or dead)
//     peer is dropped, and the next pull repairs it.
//   - Every message is bounded by Config.MaxMessageBytes (give or take one
//     change or record); longer transfers take several round trips.
//   - Changes from a peer whose clock is beyond the offset bound are
//     refused (hlc.ErrClockOffset) and the peer is logged and counted.
//   - A peer marked for resync (silent past the rejoin horizon) is sent a
//     reset: its pushes are refused and its pulls are answered with a
//     snapshot it must load after statestore.Reset, not merge.
//   - Resync marks travel with every pull request that carries a full
//     version vector, and with every reset answer; the receiver adopts
//     them, so an expulsion decided by the quorum side holds on every node
//     (docs/state.md, "Who may expel").
//
// Message types (PushMsg, PullRequest, PullResponse) encode canonically
// with Marshal/Unmarshal (fuzzed) and also as JSON.
//
// Concurrency: Node's Handle methods are safe for concurrent use; Run owns
// the pusher, puller and collector goroutines and every push goroutine,
// and returns nil once they have all stopped after ctx is cancelled.
package replicate
