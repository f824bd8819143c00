// Package claimsim is a deterministic simulation of claims: the real
// claim.Acceptor and claim.Proposal driven by a seeded scheduler instead of
// goroutines and clocks. One seed fixes everything: message delays, loss,
// duplication and reordering, node crashes (with restart from the durable
// store, a new incarnation and a proposer that forgot its rounds), crashes
// between saving and answering, and partitions, all during a chaos phase,
// after which the network heals. In a third of the seeds the voter set is
// changing by one node: each proposer holds the old or the new set.
//
// Checks, made as the run goes (an oracle watches every accept):
//   - no acceptor ever accepts two holders for one (resource, epoch);
//   - no two holders are ever accepted by a majority (of any voter set in
//     use) for one (resource, epoch), and every Decided result a proposer
//     reports is that holder;
//   - supersession: once epoch e' is decided, no round for an epoch e < e'
//     that started its prepare afterwards is decided;
//   - every acceptor's store passes Check after every restart and at the end;
//   - liveness: after the heal every client reaches its goal within a
//     bound, and a last claim of the next epoch by a lone proposer wins.
//
// Self-tests show the checks bite: acceptors that forget their store at
// restart, and voter sets changed by two nodes at once, are caught.
//
// Run is single-threaded and allocates everything per call: runs with
// different seeds may go in parallel.
package claimsim
