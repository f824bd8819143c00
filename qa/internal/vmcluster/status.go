package vmcluster

import (
	"context"
	"fmt"

	"github.com/shoal-hci/shoal/peer/client"
)

// NodeStatus is one row of Status.
type NodeStatus struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
	Pid     int    `json:"pid,omitempty"`
	// Ports are the node's NICs as the harness set them: "up", "cut"
	// (QMP set_link off), with the switch's "drop", "group N" or "delay D".
	Ports   []string       `json:"ports"`
	Peer    *client.Status `json:"peer,omitempty"`
	PeerErr string         `json:"peer_error,omitempty"`
	API     string         `json:"api,omitempty"` // the node's API address on the backplane
}

// Status reports every node: QEMU, cables and switch ports, and its peer's
// status through the guest agent (a few seconds per node that is still
// booting).
func (c *Cluster) Status(ctx context.Context) ([]NodeStatus, error) {
	rep, err := control(ctx, c.st.Dir, ctlRequest{Op: "stats"})
	if err != nil {
		return nil, err
	}
	sts, errs := c.peerStatuses(ctx, c.st.names())
	var out []NodeStatus
	for i, n := range c.st.Nodes {
		r := NodeStatus{Name: n.Name}
		r.Pid, r.Running = qemuPid(nodeDir(c.st.Dir, n.Name))
		for k := range nicCount {
			s := "up"
			if k < len(n.Cut) && n.Cut[k] {
				s = "cut"
			}
			ps := rep.Stats[portName(n.Slot, k)]
			switch {
			case ps.Down:
				s += "+drop"
			case ps.Group != 0:
				s += fmt.Sprintf("+group%d", ps.Group)
			}
			if ps.Delay > 0 {
				s += "+delay" + ps.Delay.String()
			}
			r.Ports = append(r.Ports, s)
		}
		if r.Running {
			if errs[i] != nil {
				r.PeerErr = errs[i].Error()
			} else {
				r.Peer, r.API = &sts[i], sts[i].Self.API
			}
		}
		out = append(out, r)
	}
	return out, nil
}
