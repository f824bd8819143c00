// Package placement decides which disks hold the replicas of an extent.
// It is pure: the same disks, VSD ID and extent give the same answer, on
// every node and in every run.
//
// It uses weighted rendezvous hashing: every disk gets a score for
// (VSD, extent) drawn from a hash, scaled by the disk's free space
// (score = free / -ln(u), u uniform in (0,1) from the hash), and the
// replicas are the best-scoring disks, taking at most one disk per node.
// So the first replica of an extent lands on a disk with probability
// proportional to its free space, every extent spreads over all disks
// (wide striping), and adding or filling a disk moves only the extents
// whose best score changes.
//
// ChooseNear adds data locality: the first replica on the node that
// serves the VSD (unless that node is much fuller than the rest), the
// others spread as above.
//
// Invariants: Choose and ChooseNear never returns two disks of one node (hence never one
// disk twice) nor a disk without free space; Replace never returns a disk
// on a node that already holds the extent.
//
// Caveats: free space is a weight at the time of the choice; the caller
// records where an extent went (the chunk itself) and does not re-run
// placement for extents that exist.
package placement
