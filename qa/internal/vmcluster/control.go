package vmcluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"time"
)

// ctlRequest is one request on the switch daemon's control socket (one
// JSON line each way per connection).
type ctlRequest struct {
	Op    string        `json:"op"`              // ping, down, up, delay, group, stats
	Ports []string      `json:"ports,omitempty"` // switch port names
	Group int           `json:"group,omitempty"`
	Delay time.Duration `json:"delay,omitempty"`
}

type ctlReply struct {
	Err   string               `json:"err,omitempty"`
	Stats map[string]PortStats `json:"stats,omitempty"`
}

// PortStats are one switch port's state and counters.
type PortStats struct {
	Down                    bool          `json:"down"`
	Group                   int           `json:"group"`
	Delay                   time.Duration `json:"delay"`
	Received, Sent, Dropped uint64
}

func controlPath(dir string) string { return filepath.Join(dir, "control.sock") }

// control sends one request to the switch daemon of the cluster in dir.
func control(ctx context.Context, dir string, req ctlRequest) (ctlReply, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", controlPath(dir))
	if err != nil {
		return ctlReply{}, fmt.Errorf("switch daemon of %s does not answer (see %s): %w", dir, filepath.Join(dir, "switchd.log"), err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return ctlReply{}, fmt.Errorf("switch control: %w", err)
	}
	var rep ctlReply
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&rep); err != nil {
		return ctlReply{}, fmt.Errorf("switch control: %w", err)
	}
	if rep.Err != "" {
		return rep, fmt.Errorf("switch: %s", rep.Err)
	}
	return rep, nil
}
