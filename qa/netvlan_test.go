//go:build qa

package qa_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/netd"
	"github.com/shoal-hci/shoal/qa/internal/guest"
	"github.com/shoal-hci/shoal/qa/internal/l2switch"
)

// Bond modes and VLANs in real kernels: two QEMU guests (Debian kernel,
// busybox initramfs, `shoal netd`), each with two NICs on the userspace
// L2 switch and a spec file that bonds both NICs in the mode under test
// and puts a static address on VLAN 42 on top of the bond
// (bond0.42). B pings A's VLAN address every 50 ms; the test may pull
// A's cables (QMP set_link) meanwhile. Then B checks that untagged
// traffic does not reach A's VLAN address: it puts an address of the
// VLAN's subnet on bond0 itself and pings A from there.

const (
	netvlanNodeA    = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
	netvlanNodeB    = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
	netvlanID       = 42
	netvlanAddrA    = "10.42.0.1"
	netvlanAddrB    = "10.42.0.2"
	netvlanProbe    = "10.42.0.3/24" // B's untagged address, on bond0
	netvlanInterval = 50 * time.Millisecond
)

// netvlanScript is the guest's scenario. Kernel arguments: shoal.node_id,
// shoal.mode (bond mode), shoal.addr (CIDR on the VLAN), and on B
// shoal.peer (A's VLAN address) and shoal.pings.
const netvlanScript = `
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
ID=$(arg shoal.node_id); MODE=$(arg shoal.mode); ADDR=$(arg shoal.addr); PEER=$(arg shoal.peer); N=$(arg shoal.pings)
echo "{\"lan\":{\"nics\":[\"eth0\",\"eth1\"],\"mode\":\"$MODE\",\"vlan\":VLANID,\"addresses\":[\"$ADDR\"],\"dhcp\":false}}" > /etc/shoal/network.json
/shoal netd --node-id "$ID" --resolv-conf= --log-level debug > /tmp/netd.log 2>&1 &
ok=0
for i in $(seq 1 300); do
  if /shoal net status --json > /tmp/st.json 2>/dev/null && grep -q '"ready": true' /tmp/st.json; then ok=1; break; fi
  sleep 0.5
done
report "STATUS $(tr -d '\n' < /tmp/st.json)"
[ $ok = 1 ] || { report "FAIL network not up"; tail -30 /tmp/netd.log | while read l; do report "LOG $l"; done; exit 1; }
report "MODE $(sed -n 's/^Bonding Mode: //p' /proc/net/bonding/bond0)"
report "VLANCONF $(grep '^bond0' /proc/net/vlan/config | tr -s ' ')"
report "AGG $(grep 'Aggregator ID' /proc/net/bonding/bond0 | awk '{print $NF}' | tr '\n' ,) lacp_rate=$(cut -d' ' -f1 /sys/class/net/bond0/bonding/lacp_rate)"
report "SLAVES $(cat /sys/class/net/bond0/bonding/slaves)"
report READY
mac() { cat /sys/class/net/$1/address 2>/dev/null; }
(while :; do report "WATCH $(cut -d' ' -f1 /proc/uptime) active=$(cat /sys/class/net/bond0/bonding/active_slave) eth0=$(mac eth0) eth1=$(mac eth1) bond0=$(mac bond0) vlan=$(mac bond0.VLANID) slaves=$(cat /sys/class/net/bond0/bonding/slaves | tr ' ' ,) carrier=$(cat /sys/class/net/eth0/carrier /sys/class/net/eth1/carrier | tr '\n' ,) flags=$(cat /sys/class/net/eth0/flags /sys/class/net/eth1/flags | tr '\n' ,) mii=$(grep 'MII Status' /proc/net/bonding/bond0 | cut -d' ' -f3 | tr '\n' ,) neigh=$(ip neigh show dev bond0.VLANID | tr ' ' _ | tr '\n' ,)"; sleep 0.5; done) &
[ -z "$PEER" ] && (sleep 30; grep -v DEBUG /tmp/netd.log | tail -40 | while read l; do report "LOG $l"; done) &
if [ -n "$PEER" ]; then
  for i in $(seq 1 120); do ping -c1 -W1 "$PEER" >/dev/null 2>&1 && break; done
  report PINGING
  ping -i 0.05 -c "$N" -W 2 "$PEER" 2>&1 | while read l; do report "PING $l"; done
  report PINGDONE
  # Untagged: an address of the VLAN's subnet on bond0 itself. B must not
  # answer ARP for it on bond0.VLANID (arp_ignore=1), or A's tagged replies
  # would find it there.
  echo 1 > /proc/sys/net/ipv4/conf/all/arp_ignore
  ip addr add PROBE dev bond0
  report "UNTAGGED $(ping -I bond0 -c 5 -W 1 "$PEER" 2>&1 | grep 'packets transmitted')"
  report "TAGGED $(ping -I bond0.VLANID -c 5 -W 1 "$PEER" 2>&1 | grep 'packets transmitted')"
  ip addr del PROBE dev bond0
  report CHECKED
fi
sleep 3600
`

// netvlanRun is one scenario's outcome.
type netvlanRun struct {
	a, b      *guest.VM
	statusA   netd.Status
	modeA     string // Bonding Mode line of A's /proc/net/bonding/bond0
	aggA      string // A's "AGG" line: active then per-slave aggregator IDs, LACP rate
	vlanConfA string
	replies   map[int]bool // ping sequence numbers B got replies for
	untagged  string       // B's ping summary from its untagged probe address
	tagged    string       // the same, over the VLAN
}

// runNetvlan boots the two guests in bond mode mode and runs the pings.
// During the pings, act (if not nil) runs with the guests and the time B
// started pinging.
func runNetvlan(t *testing.T, mode string, pings int, act func(ctx context.Context, a *guest.VM, pingStart time.Time)) netvlanRun {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	shoal, k, bb, dir := bondGuestFiles(ctx, t, "nv")
	initrd := filepath.Join(dir, "initrd")
	script := strings.NewReplacer("VLANID", strconv.Itoa(netvlanID), "PROBE", netvlanProbe).Replace(netvlanScript)
	err := guest.Initramfs{Kernel: k, Busybox: bb, Script: script,
		Modules: []string{"virtio_pci", "virtio_net", "virtio_console", "bonding", "8021q"},
		Files:   map[string]string{"/shoal": shoal}}.Build(initrd)
	if err != nil {
		t.Fatal(err)
	}

	sw := l2switch.New(dir)
	ports := map[string]*l2switch.Port{}
	for _, n := range []string{"a0", "a1", "b0", "b1"} {
		if ports[n], err = sw.AddPort(n); err != nil {
			t.Fatal(err)
		}
	}
	swCtx, swStop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sw.Run(swCtx) }()
	defer func() { swStop(); wg.Wait() }()

	var r netvlanRun
	r.a, err = guest.Start(ctx, guest.Config{Name: "a", Dir: dir, Kernel: k.Vmlinuz, Initrd: initrd,
		Append: "shoal.node_id=" + netvlanNodeA + " shoal.mode=" + mode + " shoal.addr=" + netvlanAddrA + "/24",
		NICs:   []guest.NIC{{ID: "nic0", MAC: "52:54:00:00:1a:00", Port: ports["a0"]}, {ID: "nic1", MAC: "52:54:00:00:1a:01", Port: ports["a1"]}}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.a.Stop()
	r.b, err = guest.Start(ctx, guest.Config{Name: "b", Dir: dir, Kernel: k.Vmlinuz, Initrd: initrd,
		Append: "shoal.node_id=" + netvlanNodeB + " shoal.mode=" + mode + " shoal.addr=" + netvlanAddrB + "/24" +
			" shoal.peer=" + netvlanAddrA + " shoal.pings=" + strconv.Itoa(pings),
		NICs: []guest.NIC{{ID: "nic0", MAC: "52:54:00:00:1b:00", Port: ports["b0"]}, {ID: "nic1", MAC: "52:54:00:00:1b:01", Port: ports["b1"]}}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.b.Stop()

	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\n--- a results:\n%s\n--- a console:\n%s\n--- b results:\n%s\n--- b console:\n%s", append(args,
			strings.Join(r.a.Lines(), "\n"), r.a.Tail(30), strings.Join(r.b.Lines(), "\n"), r.b.Tail(30))...)
	}
	for _, vm := range []*guest.VM{r.a, r.b} {
		if _, err := vm.WaitLine(ctx, "READY"); err != nil {
			fail("%v", err)
		}
	}
	stLine, _ := r.a.WaitLine(ctx, "STATUS ")
	if err := json.Unmarshal([]byte(strings.TrimPrefix(stLine, "STATUS ")), &r.statusA); err != nil {
		fail("guest a status: %v", err)
	}
	l, _ := r.a.WaitLine(ctx, "MODE ")
	r.modeA = strings.TrimPrefix(l, "MODE ")
	l, _ = r.a.WaitLine(ctx, "AGG ")
	r.aggA = strings.TrimPrefix(l, "AGG ")
	l, _ = r.a.WaitLine(ctx, "VLANCONF ")
	r.vlanConfA = strings.TrimPrefix(l, "VLANCONF ")

	if _, err := r.b.WaitLine(ctx, "PINGING"); err != nil {
		fail("%v", err)
	}
	pingStart := time.Now()
	if act != nil {
		act(ctx, r.a, pingStart)
	}
	if _, err := r.b.WaitLine(ctx, "CHECKED"); err != nil {
		fail("%v", err)
	}
	r.replies = map[int]bool{}
	for _, l := range r.b.Lines() {
		if m := pingSeq.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			r.replies[n] = true
		}
		if s, ok := strings.CutPrefix(l, "UNTAGGED "); ok {
			r.untagged = s
		}
		if s, ok := strings.CutPrefix(l, "TAGGED "); ok {
			r.tagged = s
		}
	}
	t.Logf("guest a: bond mode %q, vlan %q, %d/%d pings answered; untagged probe: %q; tagged probe: %q",
		r.modeA, r.vlanConfA, len(r.replies), pings, r.untagged, r.tagged)
	return r
}

var netvlanPingReceived = regexp.MustCompile(`(\d+) packets received`)

// netvlanReceived returns the received count of a busybox ping summary, or -1.
func netvlanReceived(summary string) int {
	m := netvlanPingReceived.FindStringSubmatch(summary)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// checkVLAN checks what every scenario shares: netd made bond0 in mode
// with both NICs and bond0.42 carrying A's address, tagged traffic flows
// and untagged traffic does not reach the VLAN address.
func (r netvlanRun) checkVLAN(t *testing.T, mode, kernelMode string) {
	t.Helper()
	links := map[string]netd.LinkStatus{}
	for _, l := range r.statusA.Links {
		links[l.Name] = l
	}
	vlan := "bond0." + strconv.Itoa(netvlanID)
	if bond := links["bond0"]; bond.BondMode != mode {
		t.Errorf("netd status: bond0 mode %q, want %q; links %+v", bond.BondMode, mode, r.statusA.Links)
	}
	if !strings.HasPrefix(r.modeA, kernelMode) {
		t.Errorf("kernel reports bond0 mode %q, want %q", r.modeA, kernelMode)
	}
	slaves := 0
	for _, l := range r.statusA.Links {
		if l.Master == "bond0" {
			slaves++
		}
	}
	if slaves != 2 {
		t.Errorf("bond0 has %d slaves, want both NICs; links %+v", slaves, r.statusA.Links)
	}
	if want := vlan + " | " + strconv.Itoa(netvlanID) + " | bond0"; r.vlanConfA != want {
		t.Errorf("/proc/net/vlan/config has %q, want %q", r.vlanConfA, want)
	}
	if st := r.statusA.LAN; st != vlan {
		t.Errorf("netd status: lan %q, want %q", st, vlan)
	}
	hasAddr := false
	for _, a := range links[vlan].Addrs {
		hasAddr = hasAddr || a == netvlanAddrA+"/24"
	}
	for _, a := range links["bond0"].Addrs {
		if strings.HasPrefix(a, "10.") {
			t.Errorf("bond0 itself carries %s: the address belongs on %s only", a, vlan)
		}
	}
	if !hasAddr {
		t.Errorf("netd status: %s lacks %s/24; links %+v", vlan, netvlanAddrA, r.statusA.Links)
	}
	if n := netvlanReceived(r.tagged); n < 3 {
		t.Errorf("tagged probe over %s: %q, want replies", vlan, r.tagged)
	}
	if n := netvlanReceived(r.untagged); n != 0 {
		t.Errorf("untagged probe from bond0: %q, want no replies: traffic without the tag reached the VLAN address", r.untagged)
	}
}

// TestFastNetVLAN: a VLAN with a static address on an active-backup bond
// carries traffic between two guests; untagged traffic does not reach it.
func TestFastNetVLAN(t *testing.T) {
	const pings = 100
	r := runNetvlan(t, "active-backup", pings, nil)
	r.checkVLAN(t, "active-backup", "fault-tolerance (active-backup)")
	if len(r.replies) < pings*9/10 {
		t.Errorf("only %d of %d pings over the VLAN answered", len(r.replies), pings)
	}
}

// TestFastNetBondALB: the same shape in balance-alb mode. While B pings,
// the test pulls A's first cable for 5 s, puts it back, then pulls the
// second for 5 s: either may carry B's traffic (balance-alb spreads
// receive by peer), so both are pulled once. Traffic continues.
func TestFastNetBondALB(t *testing.T) {
	const pings = 400 // 20 s
	// window: the ping sequence numbers sent while a cable was out.
	type window struct{ from, to int }
	var windows []window
	pull := func(ctx context.Context, a *guest.VM, pingStart time.Time) {
		seq := func() int { return int(time.Since(pingStart) / netvlanInterval) }
		sleepCtx(ctx, 3*time.Second)
		for _, nic := range []string{"nic0", "nic1"} {
			if err := a.SetLink(ctx, nic, false); err != nil {
				t.Errorf("set_link %s off: %v", nic, err)
				return
			}
			from := seq()
			sleepCtx(ctx, 5*time.Second)
			if err := a.SetLink(ctx, nic, true); err != nil {
				t.Errorf("set_link %s on: %v", nic, err)
				return
			}
			windows = append(windows, window{from, seq()})
			sleepCtx(ctx, 3*time.Second)
		}
	}
	r := runNetvlan(t, "balance-alb", pings, pull)
	r.checkVLAN(t, "balance-alb", "adaptive load balancing")
	if len(windows) != 2 {
		t.Fatalf("cables pulled %d times, want 2", len(windows))
	}
	for i, w := range windows {
		// Judge the last 3 s of each window: the bond needs miimon
		// (100 ms) and a round of ARP updates to move B's traffic, and
		// the host's view of the sequence numbers is approximate. The
		// longest run of lost pings from the pull on is logged.
		from, to := max(w.from, w.to-60), min(w.to, pings)
		got, run, gap := 0, 0, 0
		for n := w.from; n < to; n++ {
			if r.replies[n] {
				run = 0
				if n >= from {
					got++
				}
				continue
			}
			run++
			gap = max(gap, run)
		}
		t.Logf("cable nic%d out: pings %d-%d; %d/%d answered in the last 3 s; longest gap %v", i, w.from, w.to, got, to-from, time.Duration(gap)*netvlanInterval)
		if to <= from || got < (to-from)*8/10 {
			t.Errorf("with nic%d pulled only %d of %d pings answered: traffic did not continue over the other NIC", i, got, to-from)
		}
	}
	if len(r.replies) < pings*8/10 {
		t.Errorf("only %d of %d pings answered", len(r.replies), pings)
	}
}

// TestFastNetBond8023ad: the same shape in 802.3ad mode. The userspace
// switch speaks no LACP (and, like a plain switch, drops LACPDUs), so the
// bond has no partner: each NIC ends up in its own aggregator and the
// kernel uses one of them. The test checks only that netd made the bond
// in 802.3ad mode and that traffic flows over that one link; LACP
// negotiation with a real switch is not tested here.
func TestFastNetBond8023ad(t *testing.T) {
	const pings = 100
	r := runNetvlan(t, "802.3ad", pings, nil)
	r.checkVLAN(t, "802.3ad", "IEEE 802.3ad Dynamic link aggregation")
	// Aggregator IDs: the active one, then each slave's. With no LACP
	// partner each NIC is alone in its aggregator and one is active, so
	// traffic uses one link.
	ids, rate, _ := strings.Cut(r.aggA, " ")
	agg := strings.Split(strings.TrimSuffix(ids, ","), ",")
	if len(agg) != 3 || agg[1] == agg[2] || agg[0] != agg[1] && agg[0] != agg[2] {
		t.Errorf("aggregator IDs (active, eth0, eth1) %q: want each NIC in its own aggregator and one of them active", ids)
	}
	if rate != "lacp_rate=fast" {
		t.Errorf("bond0 %s, want lacp_rate=fast", rate)
	}
	t.Logf("aggregators (active, eth0, eth1): %s; %s", ids, rate)
	if len(r.replies) < pings*9/10 {
		t.Errorf("only %d of %d pings over the VLAN answered", len(r.replies), pings)
	}
}
