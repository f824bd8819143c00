package proccluster

import "errors"

// Sentinel errors.
var (
	ErrNotRoot     = errors.New("shoal-qa needs root (network and mount namespaces, FUSE): run it as root, e.g. with sudo")
	ErrNotUp       = errors.New("no cluster is up in this directory (run shoal-qa up first)")
	ErrAlreadyUp   = errors.New("a cluster is already up in this directory (run shoal-qa down first)")
	ErrNoSuchNode  = errors.New("no such node")
	ErrNotReady    = errors.New("daemon did not report ready")
	ErrMissingTool = errors.New("missing tool")
	ErrNoFaults    = errors.New("disk faults need FUSE disks: bring the cluster up with --disk-mode fuse")
)
