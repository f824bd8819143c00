package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"sort"
	"strings"
)

// Prefix starts the name of every namespace the harness creates.
const Prefix = "shq-"

// Bridge is the bridge's name inside the switch namespace.
const Bridge = "br0"

// NodeIface is the node's interface name inside its namespace.
const NodeIface = "eth0"

// SwitchName is the switch namespace of the cluster tag.
func SwitchName(tag string) string { return Prefix + tag + "-sw" }

// NodeName is the namespace of node in the cluster tag.
func NodeName(tag, node string) string { return Prefix + tag + "-" + node }

// PortName is the switch-side end of node's veth, inside the switch namespace.
func PortName(node string) string { return "p-" + node }

// Run runs a command and returns its stdout; the error carries stderr.
func Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func ip(ctx context.Context, args ...string) error {
	_, err := Run(ctx, "ip", args...)
	return err
}

// sysctls are written in every namespace before links are created.
var sysctls = []string{
	"net.ipv6.conf.all.accept_dad=0",
	"net.ipv6.conf.default.accept_dad=0",
	"net.ipv6.conf.all.dad_transmits=0",
	"net.ipv6.conf.default.dad_transmits=0",
	"net.ipv6.conf.all.disable_ipv6=0",
	"net.ipv6.conf.default.disable_ipv6=0",
}

func create(ctx context.Context, name string) error {
	if err := ip(ctx, "netns", "add", name); err != nil {
		return err
	}
	args := append([]string{"netns", "exec", name, "sysctl", "-q", "-w"}, sysctls...)
	if err := ip(ctx, args...); err != nil {
		return err
	}
	return ip(ctx, "-n", name, "link", "set", "lo", "up")
}

// CreateSwitch creates the switch namespace with an up bridge carrying the
// given addresses (CIDR form, e.g. "10.88.0.1/24").
func CreateSwitch(ctx context.Context, tag string, addrs ...string) error {
	sw := SwitchName(tag)
	if err := create(ctx, sw); err != nil {
		return err
	}
	if err := ip(ctx, "-n", sw, "link", "add", Bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"); err != nil {
		return err
	}
	for _, a := range addrs {
		if err := ip(ctx, "-n", sw, "addr", "add", a, "dev", Bridge); err != nil {
			return err
		}
	}
	return ip(ctx, "-n", sw, "link", "set", Bridge, "up")
}

// AddNode creates node's namespace and plugs its eth0 into the switch,
// assigning addrs (CIDR form; none when netd assigns them).
func AddNode(ctx context.Context, tag, node string, addrs ...string) error {
	ns, sw := NodeName(tag, node), SwitchName(tag)
	if err := create(ctx, ns); err != nil {
		return err
	}
	port := PortName(node)
	if len(port) > 15 {
		return fmt.Errorf("node name %q too long for an interface name", node)
	}
	if err := ip(ctx, "-n", sw, "link", "add", port, "type", "veth", "peer", "name", NodeIface, "netns", ns); err != nil {
		return err
	}
	if err := ip(ctx, "-n", sw, "link", "set", port, "master", Bridge); err != nil {
		return err
	}
	if err := ip(ctx, "-n", sw, "link", "set", port, "up"); err != nil {
		return err
	}
	for _, a := range addrs {
		if err := ip(ctx, "-n", ns, "addr", "add", a, "dev", NodeIface); err != nil {
			return err
		}
	}
	return ip(ctx, "-n", ns, "link", "set", NodeIface, "up")
}

// SetCable plugs (up) or pulls (down) node's cable: the switch side of its
// veth, so the node sees carrier loss as with a real cable.
func SetCable(ctx context.Context, tag, node string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return ip(ctx, "-n", SwitchName(tag), "link", "set", PortName(node), state)
}

// CableUp reports whether node's cable is plugged in.
func CableUp(ctx context.Context, tag, node string) (bool, error) {
	out, err := Run(ctx, "ip", "-n", SwitchName(tag), "-j", "link", "show", PortName(node))
	if err != nil {
		return false, err
	}
	var links []struct {
		Flags []string `json:"flags"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return false, fmt.Errorf("parse ip link output %q: %v", out, err)
	}
	for _, f := range links[0].Flags {
		if f == "UP" {
			return true, nil
		}
	}
	return false, nil
}

// Iface is what a node's eth0 carries.
type Iface struct {
	MAC   string
	Addrs []string // without prefix length, IPv4 and IPv6 including link-local
}

// NodeIfaceInfo returns the MAC of node's eth0 and the node's addresses on
// it: those on eth0 itself, and when eth0 is a port of a bridge (netd's
// LAN bridge, which carries the node's addresses and eth0's MAC) those on
// the bridge.
func NodeIfaceInfo(ctx context.Context, tag, node string) (Iface, error) {
	l, err := ifaceAddrs(ctx, tag, node, NodeIface)
	if err != nil {
		return Iface{}, err
	}
	ifc := Iface{MAC: l.Address}
	for _, a := range l.AddrInfo {
		ifc.Addrs = append(ifc.Addrs, a.Local)
	}
	if l.Master != "" {
		m, err := ifaceAddrs(ctx, tag, node, l.Master)
		if err != nil {
			return Iface{}, err
		}
		for _, a := range m.AddrInfo {
			ifc.Addrs = append(ifc.Addrs, a.Local)
		}
	}
	return ifc, nil
}

// ipLink is one link of `ip -j addr show`.
type ipLink struct {
	Address  string `json:"address"`
	Master   string `json:"master"`
	AddrInfo []struct {
		Local string `json:"local"`
	} `json:"addr_info"`
}

func ifaceAddrs(ctx context.Context, tag, node, dev string) (ipLink, error) {
	out, err := Run(ctx, "ip", "-n", NodeName(tag, node), "-j", "addr", "show", "dev", dev)
	if err != nil {
		return ipLink{}, err
	}
	var links []ipLink
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return ipLink{}, fmt.Errorf("parse ip addr output %q: %v", out, err)
	}
	return links[0], nil
}

// List returns the namespaces whose names start with prefix, sorted.
func List(ctx context.Context, prefix string) ([]string, error) {
	out, err := Run(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	sort.Strings(names)
	return names, nil
}

// Pids returns the processes in namespace name.
func Pids(ctx context.Context, name string) ([]int, error) {
	out, err := Run(ctx, "ip", "netns", "pids", name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		var p int
		if _, err := fmt.Sscan(f, &p); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// Delete removes namespace name (and so every link in it).
func Delete(ctx context.Context, name string) error {
	return ip(ctx, "netns", "delete", name)
}
