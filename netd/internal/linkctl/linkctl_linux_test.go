package linkctl

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/shoal-hci/shoal/netd/internal/netspec"
)

// inNewNetns runs fn on a locked thread inside a fresh network namespace,
// with a Ctl opened there. The thread is thrown away afterwards.
func inNewNetns(t *testing.T, fn func(c *Ctl, h *netlink.Handle)) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		orig, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if err != nil {
			t.Errorf("new netns: %v", err)
			return
		}
		defer ns.Close()
		c, err := New()
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		fn(c, c.h)
	}()
	<-done
}

func TestApplyAndObserve(t *testing.T) {
	inNewNetns(t, func(c *Ctl, h *netlink.Handle) {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
			t.Errorf("add veth: %v", err)
			return
		}
		ula := netip.MustParsePrefix("fd53:686f:616c::42/64")
		for _, a := range []netspec.Action{
			{Op: netspec.OpSetUp, Link: "peer0"},
			{Op: netspec.OpSetUp, Link: "eth0"},
			{Op: netspec.OpSetMTU, Link: "eth0", MTU: 1400},
			{Op: netspec.OpAddAddr, Link: "eth0", Addr: ula.String()},
			{Op: netspec.OpAddAddr, Link: "eth0", Addr: "10.5.0.2/24"},
			{Op: netspec.OpDefaultRoute, Link: "eth0", Addr: "10.5.0.1"},
		} {
			if err := c.Apply(a); err != nil {
				t.Errorf("apply %s: %v", a, err)
				return
			}
		}
		vlanOK := true
		if err := c.Apply(netspec.Action{Op: netspec.OpCreateVLAN, Link: "eth0.7", Master: "eth0", VLAN: 7}); errors.Is(err, syscall.EOPNOTSUPP) {
			t.Log("this kernel has no 802.1Q VLANs: VLAN part skipped")
			vlanOK = false
		} else if err != nil {
			t.Error(err)
			return
		}
		obs, err := c.Observe(false, true)
		if err != nil {
			t.Error(err)
			return
		}
		byName := map[string]netspec.Link{}
		for _, l := range obs.Links {
			byName[l.Name] = l
		}
		eth0, vlan := byName["eth0"], byName["eth0.7"]
		if eth0.Kind != netspec.KindVeth || !eth0.Up || !eth0.Carrier || eth0.MTU != 1400 || eth0.Gateway != "10.5.0.1" ||
			!slices.Contains(eth0.Addrs, "10.5.0.2/24") || !slices.Contains(eth0.Addrs, ula.String()) {
			t.Errorf("eth0 observed as %+v", eth0)
		}
		if vlanOK && (vlan.Kind != netspec.KindVLAN || vlan.VLANID != 7 || vlan.Parent != "eth0") {
			t.Errorf("eth0.7 observed as %+v", vlan)
		}
		if !byName["lo"].Loopback {
			t.Errorf("lo not seen as loopback: %+v", byName["lo"])
		}
		// Duplicate address detection settles to ok (about 1 s).
		deadline := time.Now().Add(10 * time.Second)
		state := AddrMissing
		for time.Now().Before(deadline) {
			if state, err = c.AddrState("eth0", ula); err != nil || state == AddrOK {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if state != AddrOK {
			t.Errorf("ULA state %q (%v), want ok", state, err)
		}
		if ok, err := c.Carrier("eth0"); err != nil || !ok {
			t.Errorf("Carrier(eth0) = %v, %v", ok, err)
		}
		if err := c.DelAddr("eth0", netip.MustParsePrefix("10.5.0.2/24")); err != nil {
			t.Error(err)
		}
		if err := c.DelAddr("eth0", netip.MustParsePrefix("10.5.0.2/24")); err != nil {
			t.Errorf("removing a missing address: %v, want nil", err)
		}
		if err := c.SetAddr("eth0", netip.MustParsePrefix("10.5.0.3/24"), time.Minute); err != nil {
			t.Error(err)
		}
		if err := c.Apply(netspec.Action{Op: netspec.OpDeleteLink, Link: "eth0.7"}); vlanOK && err != nil {
			t.Error(err)
		}
		if err := c.Apply(netspec.Action{Op: netspec.OpSetUp, Link: "nope0"}); err == nil {
			t.Error("action on a missing link succeeded")
		}
	})
}

// TestCreateBridge: the LAN bridge gets the given MAC and netd's alias,
// the NIC joins it as a port, an address moved onto it with NoDAD is
// usable at once, and set-mac changes its MAC.
func TestCreateBridge(t *testing.T) {
	inNewNetns(t, func(c *Ctl, h *netlink.Handle) {
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0"}); err != nil {
			t.Errorf("add veth: %v", err)
			return
		}
		mac, err := c.HardwareAddr("eth0")
		if err != nil {
			t.Error(err)
			return
		}
		ula := netip.MustParsePrefix("fd53:686f:616c::42/64")
		for _, a := range []netspec.Action{
			{Op: netspec.OpCreateBridge, Link: "br-lan", MAC: mac.String()},
			{Op: netspec.OpSetUp, Link: "br-lan"},
			{Op: netspec.OpSetUp, Link: "peer0"},
			{Op: netspec.OpSetUp, Link: "eth0"},
			{Op: netspec.OpSetMaster, Link: "eth0", Master: "br-lan"},
			{Op: netspec.OpAddAddr, Link: "br-lan", Addr: ula.String(), NoDAD: true},
		} {
			if err := c.Apply(a); err != nil {
				t.Errorf("apply %s: %v", a, err)
				return
			}
		}
		obs, err := c.Observe(false, true)
		if err != nil {
			t.Error(err)
			return
		}
		var br, port netspec.Link
		for _, l := range obs.Links {
			switch l.Name {
			case "br-lan":
				br = l
			case "eth0":
				port = l
			}
		}
		if br.Kind != netspec.KindBridge || br.Alias != netspec.BridgeAlias || br.MAC != mac.String() || !br.Up {
			t.Errorf("bridge %+v, want an up bridge with alias %q and MAC %s", br, netspec.BridgeAlias, mac)
		}
		if port.Master != "br-lan" {
			t.Errorf("eth0 master %q, want br-lan", port.Master)
		}
		if st, err := c.AddrState("br-lan", ula); err != nil || st != AddrOK {
			t.Errorf("moved backplane address state %q, %v; want ok at once (no DAD)", st, err)
		}
		other := "02:00:00:00:00:07"
		if err := c.Apply(netspec.Action{Op: netspec.OpSetMAC, Link: "br-lan", MAC: other}); err != nil {
			t.Error(err)
			return
		}
		if got, err := c.HardwareAddr("br-lan"); err != nil || got.String() != other {
			t.Errorf("bridge MAC %s, %v after set-mac, want %s", got, err, other)
		}
	})
}
