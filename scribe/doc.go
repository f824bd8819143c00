// Package scribe is the block engine: it pools the data disks of every node
// into one replicated store, serves virtual storage devices (VSDs) to local
// QEMU over NBD on a UNIX socket, and keeps every extent on enough replicas.
//
// Its node-local pieces live in internal packages: nbd (the NBD server and
// a small client), chunkstore (the on-disk format of one data disk),
// localvsd (a single-replica VSD on one chunk store, served through nbd)
// and patterncheck (a data-integrity checker). See docs/scribe.md.
package scribe
