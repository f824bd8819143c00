package netd

import "errors"

// ErrBadConfig is returned by Validate and New for an unusable Config.
var ErrBadConfig = errors.New("bad netd config")

// ErrNoStatus is returned by ReadStatus when netd has not written a
// status yet (netd is not running, or has just started).
var ErrNoStatus = errors.New("no network status yet: is `shoal netd` running?")
