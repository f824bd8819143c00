package netd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Privileged tests: real netd processes in network namespaces, against
// dnsmasq. Each test makes its own namespaces (names with a random
// prefix) and removes them, also on failure. netd runs as a child
// process (this test binary, re-executed with `ip netns exec`), because a
// Go process cannot move all its threads into a namespace.

const (
	childEnv = "SHOAL_NETD_TEST_CHILD"
	dhcpdEnv = "SHOAL_NETD_TEST_DHCPD"
)

// runDHCPServer serves netd's own DHCP server on srv0 until SIGTERM.
func runDHCPServer() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err := ServeDHCP(ctx, DHCPServerConfig{Interface: "srv0", Server: netip.MustParsePrefix("10.77.0.1/24"),
		First: netip.MustParseAddr("10.77.0.120"), Last: netip.MustParseAddr("10.77.0.129"), Router: netip.MustParseAddr("10.77.0.1"),
		Lease: 2 * time.Minute, T1: 3 * time.Second, T2: 6 * time.Second, Log: newTestLogger(os.Stderr)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestMain(m *testing.M) {
	if os.Getenv(dhcpdEnv) != "" {
		os.Exit(runDHCPServer())
	}
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	os.Exit(m.Run())
}

// runChild runs netd with its files in dir until SIGTERM.
func runChild(dir string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	log := newTestLogger(os.Stderr)
	cfg := DefaultConfig()
	cfg.Log = log
	cfg.NodeID = os.Getenv("SHOAL_NETD_TEST_NODE_ID")
	cfg.SpecPath = filepath.Join(dir, "network.json")
	cfg.StatusPath = filepath.Join(dir, "net.json")
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.ResolvConf = filepath.Join(dir, "resolv.conf")
	cfg.Interval = 200 * time.Millisecond
	cfg.DHCPMinRetry = time.Second
	cfg.Ready = func() { os.WriteFile(filepath.Join(dir, "ready"), nil, 0o644) }
	d, err := New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := d.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func requirePrivileges(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (run as root, as CI does)")
	}
	for _, tool := range []string{"ip", "dnsmasq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s on PATH (make deps installs iproute2 and dnsmasq-base)", tool)
		}
	}
}

func run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lab is a pair of namespaces joined by a veth: srv (10.77.0.1/24 on
// link "srv0") and node (link "eth0", unconfigured). With bridged, srv0
// is a port of bridge "br0" in srv, which holds the address (a switch:
// the server side stays up while the node's cable is plugged and
// unplugged by taking srv0 down and up).
type lab struct {
	prefix   string
	srv      string
	srvIf    string // where dnsmasq serves: srv0 or br0
	node     string
	dir      string
	dnsmasq  *exec.Cmd
	netd     *exec.Cmd
	nodeID   string
	netdLogs int
}

func newLab(t testing.TB) *lab { return newLabOpts(t, false) }

func newLabOpts(t testing.TB, bridged bool) *lab {
	requirePrivileges(t)
	var b [3]byte
	rand.Read(b[:])
	p := "snt" + hex.EncodeToString(b[:])
	l := &lab{prefix: p, srv: p + "s", node: p + "n", dir: t.TempDir(), nodeID: "0123456789abcdef0123456789abcdef"}
	t.Cleanup(func() {
		l.stopNetd(t)
		l.stopDnsmasq(t)
		exec.Command("ip", "netns", "del", l.srv).Run()
		exec.Command("ip", "netns", "del", l.node).Run()
		exec.Command("ip", "link", "del", p+"a").Run()
	})
	run(t, "ip", "netns", "add", l.srv)
	run(t, "ip", "netns", "add", l.node)
	run(t, "ip", "link", "add", p+"a", "type", "veth", "peer", "name", p+"b")
	run(t, "ip", "link", "set", p+"a", "netns", l.srv, "name", "srv0")
	run(t, "ip", "link", "set", p+"b", "netns", l.node, "name", "eth0")
	l.srvIf = "srv0"
	if bridged {
		l.srvIf = "br0"
		run(t, "ip", "-n", l.srv, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
		run(t, "ip", "-n", l.srv, "link", "set", "srv0", "master", "br0")
		run(t, "ip", "-n", l.srv, "link", "set", "br0", "up")
	}
	run(t, "ip", "-n", l.srv, "addr", "add", "10.77.0.1/24", "dev", l.srvIf)
	run(t, "ip", "-n", l.srv, "link", "set", "srv0", "up")
	run(t, "ip", "-n", l.srv, "link", "set", "lo", "up")
	run(t, "ip", "-n", l.node, "link", "set", "lo", "up")
	return l
}

// startDnsmasq serves DHCP on srv0 from the range lo-hi with lease time
// 2 minutes (dnsmasq's minimum) and the given T1 and T2 in seconds.
// --no-ping: dnsmasq's check that an address is free before offering it
// costs 3 s per new lease, which is the server's time, not netd's.
func (l *lab) startDnsmasq(t testing.TB, lo, hi string, t1, t2 int) {
	t.Helper()
	args := []string{"netns", "exec", l.srv, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=" + l.srvIf, "--bind-interfaces", "--dhcp-authoritative", "--no-ping",
		"--dhcp-range=" + lo + "," + hi + ",255.255.255.0,2m",
		"--dhcp-option=option:router,10.77.0.1", "--dhcp-option=option:dns-server,10.77.0.1",
		"--dhcp-leasefile=" + filepath.Join(l.dir, "dnsmasq.leases"), "--pid-file=", "--log-dhcp"}
	if t1 > 0 {
		args = append(args, fmt.Sprintf("--dhcp-option=option:T1,%d", t1), fmt.Sprintf("--dhcp-option=option:T2,%d", t2))
	}
	cmd := exec.Command("ip", args...)
	logf, err := os.OpenFile(filepath.Join(l.dir, "dnsmasq.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	l.dnsmasq = cmd
}

func (l *lab) stopDnsmasq(t testing.TB) {
	if l.dnsmasq == nil {
		return
	}
	l.dnsmasq.Process.Signal(syscall.SIGTERM)
	l.dnsmasq.Wait()
	l.dnsmasq = nil
}

func (l *lab) startNetd(t testing.TB) {
	t.Helper()
	l.netdLogs++
	logf, err := os.Create(filepath.Join(l.dir, fmt.Sprintf("netd-%d.log", l.netdLogs)))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.node, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+l.dir, "SHOAL_NETD_TEST_NODE_ID="+l.nodeID)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start netd: %v", err)
	}
	l.netd = cmd
}

func (l *lab) stopNetd(t testing.TB) {
	if l.netd == nil {
		return
	}
	l.netd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- l.netd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("netd exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		l.netd.Process.Kill()
		<-done
		t.Errorf("netd did not stop within 10 s of SIGTERM")
	}
	l.netd = nil
}

// logs returns every log of the lab, for failure messages.
func (l *lab) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(l.dir, "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		fmt.Fprintf(&b, "==== %s\n%s", filepath.Base(f), tail(string(data), 40))
	}
	return b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitStatus polls the status file until ok accepts it.
func (l *lab) waitStatus(t testing.TB, what string, timeout time.Duration, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last Status
	for time.Now().Before(deadline) {
		if st, err := ReadStatus(filepath.Join(l.dir, "net.json")); err == nil {
			last = st
			if ok(st) {
				return st
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	var b strings.Builder
	last.WriteText(&b)
	t.Fatalf("timed out after %v waiting for %s; last status:\n%s\n%s", timeout, what, b.String(), l.logs())
	return last
}

func lanDHCP(st Status) DHCPStatus {
	for _, d := range st.DHCP {
		if d.Interface == st.LAN {
			return d
		}
	}
	return DHCPStatus{}
}

func bound(st Status) bool { return lanDHCP(st).State == "bound" && lanDHCP(st).Address != "" }

func inRange(addr, lo, hi string) bool {
	ip, _, err := net.ParseCIDR(addr)
	if err != nil {
		return false
	}
	return bytesCompare(ip.To4(), net.ParseIP(lo).To4()) >= 0 && bytesCompare(ip.To4(), net.ParseIP(hi).To4()) <= 0
}

func bytesCompare(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

// TestDHCPAgainstDnsmasq walks one node through a lease's life against
// dnsmasq: bound with router, DNS and backplane address; renewed at T1;
// kept across a restart of netd; kept while the server is gone and
// renewed when it is back; dropped on NAK for an address in a new range.
func TestDHCPAgainstDnsmasq(t *testing.T) {
	l := newLab(t)
	l.startDnsmasq(t, "10.77.0.50", "10.77.0.99", 3, 6)
	l.startNetd(t)

	st := l.waitStatus(t, "a bound lease and a ready network", 30*time.Second, func(s Status) bool { return bound(s) && s.Ready })
	d := lanDHCP(st)
	if st.LAN != "br-lan" || !inRange(d.Address, "10.77.0.50", "10.77.0.99") || d.Router != "10.77.0.1" || d.Server != "10.77.0.1" {
		t.Errorf("lease: lan %q %+v, want br-lan with an address in 10.77.0.50-99 and router 10.77.0.1", st.LAN, d)
	}
	if st.Bonding {
		t.Log("this kernel has bonding; the namespace test covers the direct-NIC path only when it has none")
	}
	if st.Backplane.State != "ok" || !strings.HasPrefix(st.Backplane.Address, "fd53:686f:616c:0:") || st.Backplane.Interface != "br-lan" {
		t.Errorf("backplane: %+v, want an ok fd53:686f:616c::/64 address on br-lan", st.Backplane)
	}
	if _, err := os.Stat(filepath.Join(l.dir, "ready")); err != nil {
		t.Errorf("Ready was not called: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(l.dir, "resolv.conf")); err != nil || !strings.Contains(string(b), "nameserver 10.77.0.1") {
		t.Errorf("resolv.conf: %q, %v; want nameserver 10.77.0.1", b, err)
	}
	addr := strings.Split(d.Address, "/")[0]
	run(t, "ip", "netns", "exec", l.srv, "ping", "-c1", "-W2", addr)
	routes := run(t, "ip", "-n", l.node, "route", "show", "default")
	if !strings.Contains(routes, "via 10.77.0.1") {
		t.Errorf("default route: %q, want via 10.77.0.1", routes)
	}
	if out := run(t, "ip", "-n", l.node, "-4", "addr", "show", "dev", "br-lan"); !strings.Contains(out, "valid_lft") || strings.Contains(out, "valid_lft forever") {
		t.Errorf("leased address should carry the lease's lifetime:\n%s", out)
	}

	t.Run("renews at T1", func(t *testing.T) {
		st := l.waitStatus(t, "a renewal", 20*time.Second, func(s Status) bool { return bound(s) && lanDHCP(s).Obtained.After(d.Obtained) })
		if got := lanDHCP(st).Address; got != d.Address {
			t.Errorf("renewal changed the address: %s, want %s", got, d.Address)
		}
	})

	t.Run("lease survives restart", func(t *testing.T) {
		l.stopNetd(t)
		l.stopDnsmasq(t)
		l.startNetd(t)
		st := l.waitStatus(t, "the restored lease", 10*time.Second, func(s Status) bool {
			return lanDHCP(s).Restored && lanDHCP(s).Address == d.Address
		})
		if !st.Ready {
			t.Errorf("restored lease but not ready: %+v", st)
		}
	})

	t.Run("server gone then back", func(t *testing.T) {
		// dnsmasq is still stopped: renewals fail, the address stays.
		l.waitStatus(t, "failed renewals", 30*time.Second, func(s Status) bool {
			x := lanDHCP(s)
			return (x.State == "renewing" || x.State == "rebinding") && x.LastError != "" && x.Address == d.Address
		})
		out := run(t, "ip", "-n", l.node, "-4", "addr", "show", "dev", "br-lan")
		if !strings.Contains(out, addr) {
			t.Errorf("address dropped while the lease is valid:\n%s", out)
		}
		before := time.Now()
		l.startDnsmasq(t, "10.77.0.50", "10.77.0.99", 3, 6)
		st := l.waitStatus(t, "a renewal after the server came back", 30*time.Second, func(s Status) bool {
			return bound(s) && !lanDHCP(s).Restored && lanDHCP(s).Obtained.After(before)
		})
		if got := lanDHCP(st).Address; got != d.Address {
			t.Errorf("address changed: %s, want %s", got, d.Address)
		}
	})

	t.Run("NAK", func(t *testing.T) {
		l.stopDnsmasq(t)
		os.Remove(filepath.Join(l.dir, "dnsmasq.leases"))
		l.startDnsmasq(t, "10.77.0.150", "10.77.0.199", 3, 6)
		st := l.waitStatus(t, "a new lease from the new range", 40*time.Second, func(s Status) bool {
			return bound(s) && inRange(lanDHCP(s).Address, "10.77.0.150", "10.77.0.199")
		})
		out := run(t, "ip", "-n", l.node, "-4", "addr", "show", "dev", "br-lan")
		if strings.Contains(out, addr+"/") {
			t.Errorf("old address %s still on br-lan after NAK:\n%s", addr, out)
		}
		logs := l.logs()
		if !strings.Contains(logs, "NAK") {
			t.Errorf("no NAK in the logs:\n%s", logs)
		}
		_ = st
	})

	t.Run("rebinds to another server", func(t *testing.T) {
		// The server moves to 10.77.0.2: renewals (unicast to 10.77.0.1)
		// fail, and at T2 the broadcast rebind finds the new server.
		before := lanDHCP(l.waitStatus(t, "a lease", 10*time.Second, bound))
		l.stopDnsmasq(t)
		run(t, "ip", "-n", l.srv, "addr", "del", "10.77.0.1/24", "dev", "srv0")
		run(t, "ip", "-n", l.srv, "addr", "add", "10.77.0.2/24", "dev", "srv0")
		l.startDnsmasq(t, "10.77.0.150", "10.77.0.199", 3, 6)
		st := l.waitStatus(t, "a lease from the new server", 40*time.Second, func(s Status) bool {
			return bound(s) && lanDHCP(s).Server == "10.77.0.2"
		})
		if got := lanDHCP(st).Address; got != before.Address {
			t.Errorf("rebinding moved the address: %s, want %s", got, before.Address)
		}
	})
}

// TestLinkLocalFallback: with no DHCP server the node claims an IPv4
// link-local address, shows it, keeps trying, and drops it once a server
// answers.
func TestLinkLocalFallback(t *testing.T) {
	l := newLab(t)
	l.startNetd(t)
	st := l.waitStatus(t, "a link-local address", 40*time.Second, func(s Status) bool { return lanDHCP(s).LinkLocal != "" })
	ll := lanDHCP(st).LinkLocal
	if !strings.HasPrefix(ll, "169.254.") || !strings.HasSuffix(ll, "/16") {
		t.Errorf("link-local %q, want 169.254.x.y/16", ll)
	}
	if st.Phase != PhaseDegraded || !st.Ready {
		t.Errorf("phase %q ready %v, want degraded and ready (reachable on link-local and backplane)", st.Phase, st.Ready)
	}
	out := run(t, "ip", "-n", l.node, "-4", "addr", "show", "dev", "br-lan")
	if !strings.Contains(out, strings.Split(ll, "/")[0]) {
		t.Errorf("link-local address not on br-lan:\n%s", out)
	}
	var b strings.Builder
	st.WriteText(&b)
	if !strings.Contains(b.String(), "link-local: "+ll) {
		t.Errorf("status text does not show the link-local address:\n%s", b.String())
	}
	l.startDnsmasq(t, "10.77.0.50", "10.77.0.99", 0, 0)
	st = l.waitStatus(t, "a lease after the server appeared", 90*time.Second, bound)
	if lanDHCP(st).LinkLocal != "" {
		t.Errorf("link-local still held after binding: %+v", lanDHCP(st))
	}
	if out := run(t, "ip", "-n", l.node, "-4", "addr", "show", "dev", "br-lan"); strings.Contains(out, "169.254.") {
		t.Errorf("link-local address still on br-lan after binding:\n%s", out)
	}
}

// TestBackplaneBetweenNodes: two nodes joined by a veth, no DHCP server:
// each gets its unique-local backplane address, and they reach each other
// on it. Then a third setup with the same node ID shows DAD's verdict.
func TestBackplaneBetweenNodes(t *testing.T) {
	a := newLab(t) // a.srv plays node B: run a second netd there
	b := &lab{prefix: a.prefix, node: a.srv, dir: t.TempDir(), nodeID: "fedcba9876543210fedcba9876543210"}
	t.Cleanup(func() { b.stopNetd(t) })
	run(t, "ip", "-n", a.srv, "addr", "flush", "dev", "srv0")
	run(t, "ip", "-n", a.srv, "link", "set", "srv0", "name", "eth0")
	a.startNetd(t)
	b.startNetd(t)
	okBP := func(s Status) bool { return s.Backplane.State == "ok" }
	sa := a.waitStatus(t, "node A's backplane", 30*time.Second, okBP)
	sb := b.waitStatus(t, "node B's backplane", 30*time.Second, okBP)
	if sa.Backplane.Address == sb.Backplane.Address {
		t.Fatalf("both nodes have %s", sa.Backplane.Address)
	}
	run(t, "ip", "netns", "exec", a.node, "ping", "-6", "-c1", "-W2", strings.Split(sb.Backplane.Address, "/")[0])

	t.Run("duplicate node ID is reported", func(t *testing.T) {
		b.stopNetd(t)
		run(t, "ip", "-n", b.node, "addr", "flush", "dev", "br-lan", "scope", "global")
		b.nodeID = a.nodeID
		os.Remove(filepath.Join(b.dir, "net.json"))
		b.startNetd(t)
		st := b.waitStatus(t, "a duplicate address verdict", 30*time.Second, func(s Status) bool { return s.Backplane.State == "duplicate" })
		if st.Ready || !strings.Contains(st.Backplane.Message, "node ID") {
			t.Errorf("duplicate: ready %v message %q, want not ready and a message about node IDs", st.Ready, st.Backplane.Message)
		}
	})
}

// TestOwnDHCPServer: netd's client against netd's small server (the one
// `shoal net dhcp-server` runs): lease, then a renewal at T1.
func TestOwnDHCPServer(t *testing.T) {
	l := newLab(t)
	logf, err := os.Create(filepath.Join(l.dir, "dhcpd.log"))
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command("ip", "netns", "exec", l.srv, os.Args[0], "-test.run=^$")
	srv.Env = append(os.Environ(), dhcpdEnv+"=1")
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Signal(syscall.SIGTERM); srv.Wait() })
	l.startNetd(t)
	st := l.waitStatus(t, "a lease from netd's server", 30*time.Second, bound)
	d := lanDHCP(st)
	if !inRange(d.Address, "10.77.0.120", "10.77.0.129") || d.Router != "10.77.0.1" {
		t.Errorf("lease %+v, want an address in 10.77.0.120-129 via 10.77.0.1", d)
	}
	st = l.waitStatus(t, "a renewal", 20*time.Second, func(s Status) bool { return bound(s) && lanDHCP(s).Obtained.After(d.Obtained) })
	if got := lanDHCP(st).Address; got != d.Address {
		t.Errorf("renewal moved the address: %s, want %s", got, d.Address)
	}
}
