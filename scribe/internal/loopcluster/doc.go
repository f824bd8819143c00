// Package loopcluster runs several scribe "nodes" in one process for tests
// and benchmarks: each node has its own chunk stores on files and serves
// them with a real chunk service over mutual TLS on loopback, and the
// Cluster is a replvol.Pool over them with fault injection (a node can be
// stopped, which closes its connections and refuses new ones, and started
// again on the same disks, reopened from the files).
//
// Concurrency: a Cluster is safe for concurrent use. Stop and Start wait
// for the node's server to finish or to be listening.
//
// Caveats: stopping a node closes its stores without a sync; the files go
// through the page cache, so nothing is lost the way a power cut would
// lose it. Certificates come from a throwaway CA made by NewCA.
package loopcluster
