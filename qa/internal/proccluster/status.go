package proccluster

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/shoal-hci/shoal/qa/internal/faultdisk"
	"github.com/shoal-hci/shoal/qa/internal/netns"
)

// NodeStatus is what Status observes of one node.
type NodeStatus struct {
	Name        string
	Addrs       []string          // on eth0, including DHCP and link-local ones
	CableUp     bool              //
	Partitioned bool              // has partition rules
	Daemons     map[string]string // daemon -> running | frozen | dead
	Disks       string            // "disk1=ok disk2=eio ..."
}

// Status observes every node.
func (c *Cluster) Status(ctx context.Context) ([]NodeStatus, error) {
	var all []NodeStatus
	for _, n := range c.st.Nodes {
		s := NodeStatus{Name: n.Name, Daemons: map[string]string{}}
		ifc, err := netns.NodeIfaceInfo(ctx, c.st.Tag, n.Name)
		if err != nil {
			return nil, err
		}
		s.Addrs = ifc.Addrs
		if s.CableUp, err = netns.CableUp(ctx, c.st.Tag, n.Name); err != nil {
			return nil, err
		}
		if s.Partitioned, err = netns.Isolated(ctx, c.st.Tag, n.Name); err != nil {
			return nil, err
		}
		for _, d := range c.st.Daemons {
			s.Daemons[d] = "dead"
			if r, err := readRecord(c.pidPath(n.Name, d)); err == nil {
				s.Daemons[d] = r.state()
			}
		}
		if c.st.Disks > 0 && c.diskMode() != DiskModeFUSE {
			s.Disks = fmt.Sprintf("%d %s disks", c.st.Disks, c.diskMode())
		} else if c.st.Disks > 0 {
			if s.Disks, err = faultdisk.Status(ctx, c.diskSock(n.Name)); err != nil {
				s.Disks = "unreachable: " + err.Error()
			}
		}
		all = append(all, s)
	}
	return all, nil
}

// PrintStatus writes Status as a table.
func (c *Cluster) PrintStatus(ctx context.Context, w io.Writer) error {
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "cluster %s in %s; daemons: %s\n", c.st.Tag, c.st.Dir, strings.Join(c.st.Daemons, ", "))
	if c.st.Partition != nil {
		fmt.Fprintf(w, "partition: %s / %s\n", strings.Join(c.st.Partition[0], ","), strings.Join(c.st.Partition[1], ","))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCABLE\tPARTITIONED\tDAEMONS\tDISKS\tADDRESSES")
	for _, s := range st {
		var ds []string
		for _, d := range c.st.Daemons {
			ds = append(ds, d+"="+s.Daemons[d])
		}
		if len(ds) == 0 {
			ds = []string{"-"}
		}
		cable := "up"
		if !s.CableUp {
			cable = "cut"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", s.Name, cable, s.Partitioned, strings.Join(ds, " "), s.Disks, strings.Join(s.Addrs, " "))
	}
	return tw.Flush()
}
