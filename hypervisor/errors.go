package hypervisor

import "errors"

var (
	// ErrBadConfig is wrapped by every Config validation error.
	ErrBadConfig = errors.New("invalid hypervisor config")
	// ErrBadRecord is wrapped when a vm/<name> record cannot be decoded
	// or holds values out of range.
	ErrBadRecord = errors.New("invalid vm record")
)

// ErrNoPlacement is returned by Place when no node can take a VM.
var ErrNoPlacement = errors.New("no node can run the vm")
