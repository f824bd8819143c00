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

// A tap NIC joins its bridge and comes up. Runs as root in a network
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
	if err := vm.Kill(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(TapName(spec.ID, 0)); err == nil {
		t.Error("tap still exists after QEMU exited")
	}
}
