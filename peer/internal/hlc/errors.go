package hlc

import "errors"

// ErrClockOffset is returned when a remote timestamp is further ahead of the
// local physical clock than the maximum offset. The peer that sent it has a
// clock that runs ahead: fix its time source (NTP) before it rejoins.
var ErrClockOffset = errors.New("remote clock too far ahead")

// ErrBadTimestamp is returned when bytes do not decode as a timestamp.
var ErrBadTimestamp = errors.New("bad hlc timestamp")
