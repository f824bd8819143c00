//go:build qa

package qa_test

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/qa"
)

// TestFastVMNet: on a node whose netd made br-lan over its NIC, a VM
// created with `--net default` gets a tap on br-lan (shoal hypervisor
// takes the bridge from netd's status), and the guest's DHCP client gets
// a lease from the switch's dnsmasq, for the MAC in the VM record; the
// node reaches the guest at that address through the bridge.
func TestFastVMNet(t *testing.T) {
	g := vmScenarioPrereqs(t)
	c := qa.NewCluster(t, qa.Options{Nodes: 1, Disks: 1, DiskSize: 1 << 30})
	node := c.Nodes()[0]
	if out, err := c.Shoal(node, "cluster", "create"); err != nil {
		t.Fatalf("cluster create: %v: %s", err, out)
	}
	c.WaitFor("a cluster of one", 60*time.Second, c.OneCluster(node))

	var ns struct {
		LAN     string `json:"lan"`
		Bridge  string `json:"bridge"`
		LANPort string `json:"lan_port"`
	}
	if out, err := c.Shoal(node, "net", "status", "--json"); err != nil || json.Unmarshal([]byte(out), &ns) != nil {
		t.Fatalf("net status: %v: %s", err, out)
	}
	if ns.Bridge != "br-lan" || ns.LAN != "br-lan" || ns.LANPort != "eth0" {
		t.Fatalf("netd: lan %q bridge %q port %q, want br-lan over eth0", ns.LAN, ns.Bridge, ns.LANPort)
	}

	if out, err := c.Shoal(node, "vm", "create", "net1", "--cpus", "1", "--memory", "128M", "--net", "default",
		"--kernel", g.Kernel, "--initrd", g.Initrd, "--append", g.Append); err != nil {
		t.Fatalf("vm create: %v: %s", err, out)
	}
	var v struct {
		ID   string `json:"id"`
		NICs []struct {
			MAC string `json:"mac"`
		} `json:"nics"`
		Status   string   `json:"status"`
		GuestIPs []string `json:"guest_ips"`
	}
	var guest netip.Addr
	c.WaitFor("vm net1 running with a guest address from the switch's DHCP", 150*time.Second, func() (bool, string) {
		out, err := c.Shoal(node, "vm", "info", "net1", "--json")
		if err != nil || json.Unmarshal([]byte(out), &v) != nil {
			return false, out
		}
		for _, ip := range v.GuestIPs {
			// "eth0 10.88.0.123/24"
			if f := strings.Fields(ip); len(f) == 2 && f[0] == "eth0" {
				if p, err := netip.ParsePrefix(f[1]); err == nil && p.Addr().Is4() {
					guest = p.Addr()
				}
			}
		}
		return v.Status == "running" && guest.IsValid(), out
	})
	killAtCleanup(t, v.ID)
	lo, hi := netip.MustParseAddr("10.88.0.100"), netip.MustParseAddr("10.88.0.250") // the harness's DHCP range
	if guest.Less(lo) || hi.Less(guest) {
		t.Errorf("guest address %s, want one from the switch's range 10.88.0.100-250", guest)
	}
	if len(v.NICs) != 1 {
		t.Fatalf("vm net1 has %d NICs, want 1", len(v.NICs))
	}
	mac := strings.ToLower(v.NICs[0].MAC)

	// The lease in the switch's dnsmasq is for the record's MAC.
	leases, err := os.ReadFile(filepath.Join(c.Dir(), "switch", "dnsmasq.leases"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(leases), mac+" "+guest.String()+" ") {
		t.Errorf("dnsmasq leases lack %s for %s:\n%s", guest, mac, leases)
	}

	// br-lan's ports: the node's NIC and one tap.
	out, err := c.Exec(node, "ip", "-d", "-j", "link", "show", "master", "br-lan")
	if err != nil {
		t.Fatalf("ip link show master br-lan: %v: %s", err, out)
	}
	var ports []struct {
		Name     string `json:"ifname"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal([]byte(out), &ports); err != nil {
		t.Fatalf("parse %q: %v", out, err)
	}
	var names []string
	taps := 0
	for _, p := range ports {
		names = append(names, p.Name+"("+p.LinkInfo.Kind+")")
		if p.LinkInfo.Kind == "tun" {
			taps++
		}
	}
	if taps != 1 || !strings.Contains(strings.Join(names, " "), "eth0(veth)") {
		t.Errorf("br-lan ports %v, want eth0 and the VM's tap", names)
	}
	if out, err := c.Exec(node, "ping", "-c1", "-W5", guest.String()); err != nil {
		t.Errorf("node cannot ping the guest at %s through br-lan: %v: %s", guest, err, out)
	}
	t.Logf("vm net1 (MAC %s): tap on br-lan, lease %s from the switch's dnsmasq", mac, guest)
}
