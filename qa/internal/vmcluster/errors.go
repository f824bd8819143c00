package vmcluster

import "errors"

var (
	// ErrNotRoot: the harness needs root (network namespaces, taps).
	ErrNotRoot = errors.New("the image-level harness needs root (network namespace and tap for the DHCP server); run it as root")
	// ErrNoCluster: nothing is up in the directory.
	ErrNoCluster = errors.New("no image-level cluster is up in this directory (start one with `shoal-qa vm up`)")
	// ErrExists: a cluster is already up in the directory.
	ErrExists = errors.New("an image-level cluster is already up in this directory (`shoal-qa vm down` removes it)")
	// ErrUnknownNode: no such node in the cluster.
	ErrUnknownNode = errors.New("no such node")
)
