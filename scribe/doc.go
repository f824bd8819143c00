// Package scribe is the block engine: it pools the data disks of every node
// into one replicated store, serves virtual storage devices (VSDs) to local
// QEMU over NBD on a UNIX socket, and keeps every extent on enough replicas.
package scribe
