package netd

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ipLink is what the tests read of `ip -d -j link show`.
type ipLink struct {
	Name     string `json:"ifname"`
	Address  string `json:"address"`
	Master   string `json:"master"`
	Alias    string `json:"ifalias"`
	LinkInfo struct {
		Kind string `json:"info_kind"`
		Data struct {
			ForwardDelay *int `json:"forward_delay"`
			STPState     *int `json:"stp_state"`
		} `json:"info_data"`
	} `json:"linkinfo"`
}

func (l *lab) link(t *testing.T, name string) ipLink {
	t.Helper()
	var links []ipLink
	out := run(t, "ip", "-n", l.node, "-d", "-j", "link", "show", "dev", name)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip link show %s: %q: %v", name, out, err)
	}
	return links[0]
}

// addrs lists the global addresses of a link in the node (CIDR).
func (l *lab) addrs(t *testing.T, name string) []string {
	t.Helper()
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
			Scope     string `json:"scope"`
		} `json:"addr_info"`
	}
	out := run(t, "ip", "-n", l.node, "-j", "addr", "show", "dev", name)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip addr show %s: %q: %v", name, out, err)
	}
	var as []string
	for _, a := range links[0].AddrInfo {
		if a.Scope == "global" {
			as = append(as, fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
		}
	}
	return as
}

// applies counts the actions netd logged so far.
func (l *lab) applies() int {
	files, _ := filepath.Glob(filepath.Join(l.dir, "netd-*.log"))
	n := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		n += strings.Count(string(b), "msg=apply")
	}
	return n
}

// TestLANBridge: netd makes br-lan over the node's NIC with the NIC's MAC,
// STP off and forward delay 0; the lease and the backplane address land
// on the bridge and the NIC keeps no address; later passes change
// nothing; a bridge netd did not create (with an address in the Shoal
// prefix and a port) is left as it was. Then the upgrade: addresses on
// the NIC as an older netd left them move to the bridge, the lease kept.
func TestLANBridge(t *testing.T) {
	l := newLab(t)
	// A foreign bridge with a tap port and addresses, made before netd.
	run(t, "ip", "-n", l.node, "link", "add", "br0", "type", "bridge")
	run(t, "ip", "-n", l.node, "tuntap", "add", "dev", "fxtap0", "mode", "tap")
	run(t, "ip", "-n", l.node, "link", "set", "fxtap0", "master", "br0")
	run(t, "ip", "-n", l.node, "addr", "add", "192.168.77.1/24", "dev", "br0")
	run(t, "ip", "-n", l.node, "addr", "add", "fd53:686f:616c::99/64", "dev", "br0", "nodad")
	foreignBefore := l.link(t, "br0")

	l.startDnsmasq(t, "10.77.0.50", "10.77.0.99", 0, 0)
	l.startNetd(t)
	st := l.waitStatus(t, "a bound lease on the bridge and a ready network", 30*time.Second, func(s Status) bool { return bound(s) && s.Ready })
	d := lanDHCP(st)
	if st.LAN != "br-lan" || st.Bridge != "br-lan" || st.LANPort != "eth0" || d.Interface != "br-lan" || st.Backplane.Interface != "br-lan" {
		t.Errorf("status: lan %q bridge %q port %q dhcp on %q backplane on %q; want br-lan over eth0 carrying all", st.LAN, st.Bridge, st.LANPort, d.Interface, st.Backplane.Interface)
	}
	br, nic := l.link(t, "br-lan"), l.link(t, "eth0")
	if br.LinkInfo.Kind != "bridge" || br.Address != nic.Address || nic.Master != "br-lan" || br.Alias == "" {
		t.Errorf("br-lan %+v, eth0 %+v: want a bridge with eth0's MAC and netd's alias, eth0 its port", br, nic)
	}
	if fd, stp := br.LinkInfo.Data.ForwardDelay, br.LinkInfo.Data.STPState; fd == nil || *fd != 0 || stp == nil || *stp != 0 {
		t.Errorf("br-lan forward_delay %v stp_state %v, want 0 and 0", fd, stp)
	}
	if got := l.addrs(t, "eth0"); len(got) != 0 {
		t.Errorf("eth0 keeps addresses %v, want none (a bridge port)", got)
	}
	got := strings.Join(l.addrs(t, "br-lan"), " ")
	if !strings.Contains(got, d.Address) || !strings.Contains(got, st.Backplane.Address) {
		t.Errorf("br-lan has %s, want the lease %s and the backplane %s", got, d.Address, st.Backplane.Address)
	}
	run(t, "ip", "netns", "exec", l.srv, "ping", "-c1", "-W2", strings.Split(d.Address, "/")[0])

	t.Run("later passes change nothing", func(t *testing.T) {
		n := l.applies()
		time.Sleep(2 * time.Second) // ten passes at 200 ms
		if m := l.applies(); m != n {
			t.Errorf("netd applied %d more actions on a converged network:\n%s", m-n, l.logs())
		}
	})

	t.Run("foreign bridge left alone", func(t *testing.T) {
		after := l.link(t, "br0")
		if after.Address != foreignBefore.Address || after.Alias != foreignBefore.Alias || l.link(t, "fxtap0").Master != "br0" {
			t.Errorf("br0 changed: before %+v, after %+v", foreignBefore, after)
		}
		got := strings.Join(l.addrs(t, "br0"), " ")
		if got != "192.168.77.1/24 fd53:686f:616c::99/64" {
			t.Errorf("br0 addresses %q, want them untouched", got)
		}
	})

	t.Run("upgrade from addresses on the NIC", func(t *testing.T) {
		// What an older netd leaves: no bridge, the lease and the
		// backplane address on eth0, the lease file named after eth0.
		l.stopNetd(t)
		run(t, "ip", "-n", l.node, "link", "del", "br-lan")
		run(t, "ip", "-n", l.node, "addr", "add", d.Address, "dev", "eth0", "valid_lft", "100", "preferred_lft", "100")
		run(t, "ip", "-n", l.node, "addr", "add", st.Backplane.Address, "dev", "eth0")
		state := filepath.Join(l.dir, "state")
		if err := os.Rename(filepath.Join(state, "lease-br-lan.json"), filepath.Join(state, "lease-eth0.json")); err != nil {
			t.Fatal(err)
		}
		l.stopDnsmasq(t) // the lease must come from the file, not a new DISCOVER
		l.startNetd(t)
		st2 := l.waitStatus(t, "the restored lease on the bridge", 20*time.Second, func(s Status) bool {
			return s.Bridge == "br-lan" && lanDHCP(s).Restored && lanDHCP(s).Address == d.Address && s.Backplane.State == "ok"
		})
		if st2.Backplane.Interface != "br-lan" {
			t.Errorf("backplane on %q, want br-lan", st2.Backplane.Interface)
		}
		if got := l.addrs(t, "eth0"); len(got) != 0 {
			t.Errorf("eth0 keeps addresses %v after the upgrade", got)
		}
		if br := l.link(t, "br-lan"); br.Address != nic.Address {
			t.Errorf("br-lan MAC %s, want eth0's %s", br.Address, nic.Address)
		}
		run(t, "ip", "netns", "exec", l.srv, "ping", "-c1", "-W2", strings.Split(d.Address, "/")[0])
		if n, span, ok := applySpan(filepath.Join(l.dir, fmt.Sprintf("netd-%d.log", l.netdLogs))); ok {
			t.Logf("upgrade: netd applied %d actions (bridge made, eth0 into it, addresses moved) within %v of log time", n, span)
		}
		logs := l.logs()
		if !strings.Contains(logs, "lease moved to the bridge") {
			t.Errorf("no lease move in the logs:\n%s", logs)
		}
	})
}

// applySpan returns how many actions a netd log shows and the time from
// the first to the last.
func applySpan(path string) (int, time.Duration, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	var first, last time.Time
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "msg=apply") {
			continue
		}
		f, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, f)
		if err != nil {
			continue
		}
		if n == 0 {
			first = at
		}
		last = at
		n++
	}
	return n, last.Sub(first), n > 0
}
