package qemu

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// A tap NIC joins its bridge, with the bridge's MTU (a jumbo-frame
// bridge keeps its MTU), and comes up. Runs as root in a network
// namespace made for the test (QEMU inherits the thread's namespace).
func TestTapNICJoinsBridge(t *testing.T) {
	host := testHost(t)
	if os.Geteuid() != 0 {
		t.Skip("tap NICs need root (creating a bridge and taps in a network namespace)")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // also switches this thread into it
	if err != nil {
		t.Skipf("cannot create a network namespace: %v", err)
	}
	defer ns.Close()
	defer netns.Set(orig)

	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-test"}}); err != nil {
		t.Fatal(err)
	}
	br, err := netlink.LinkByName("br-test")
	if err != nil {
		t.Fatal(err)
	}
	// A jumbo-frame uplink: the bridge takes its MTU, 9000.
	const jumbo = 9000
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "up0", MTU: jumbo, MasterIndex: br.Attrs().Index}, PeerName: "up1", PeerMTU: jumbo}); err != nil {
		t.Fatal(err)
	}
	if br, err = netlink.LinkByName("br-test"); err != nil || br.Attrs().MTU != jumbo {
		t.Fatalf("bridge over a %d-byte uplink: %v, err %v", jumbo, br, err)
	}
	spec := tinySpec("tap", 64)
	spec.NICs = []NIC{{Kind: NICTap, Bridge: "br-test"}}
	vm := startVM(t, host, filepath.Join(t.TempDir(), "vm"), spec, false)
	tap, err := netlink.LinkByName(TapName(spec.ID, 0))
	if err != nil {
		t.Fatal(err)
	}
	if tap.Attrs().MasterIndex != br.Attrs().Index {
		t.Errorf("tap master index %d, want bridge %d", tap.Attrs().MasterIndex, br.Attrs().Index)
	}
	if tap.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("tap %s is down", tap.Attrs().Name)
	}
	if br, err = netlink.LinkByName("br-test"); err != nil || br.Attrs().MTU != jumbo || tap.Attrs().MTU != jumbo {
		t.Errorf("after the tap joined: bridge MTU %d, tap MTU %d (err %v), want both %d", br.Attrs().MTU, tap.Attrs().MTU, err, jumbo)
	}
	if err := vm.Kill(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(TapName(spec.ID, 0)); err == nil {
		t.Error("tap still exists after QEMU exited")
	}
}
