package scribe

import (
	"context"
	"net"

	"github.com/shoal-hci/shoal/scribe/internal/nbd"
)

// NBDClient is a small NBD client (fixed newstyle, NBD_OPT_GO, one
// request at a time per connection) for tools outside scribe that write
// or read a VSD through the node's NBD socket, such as `shoal image
// upload`. Open several for parallel requests: the daemon advertises
// CAN_MULTI_CONN and connections to one VSD share its open volume.
type NBDClient = nbd.Client

// DialNBD connects to the NBD server on the UNIX socket path (the
// daemon's: DefaultNBDSocket) and selects export, a VSD name.
func DialNBD(ctx context.Context, path, export string) (*NBDClient, error) {
	return nbd.Dial(ctx, "unix", path, export)
}

// NewNBDClient runs the NBD handshake on conn and selects export; the
// client owns conn from then on (closing conn aborts a request in flight).
func NewNBDClient(conn net.Conn, export string) (*NBDClient, error) {
	return nbd.NewClient(conn, export)
}
