package vmcluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shoal-hci/shoal/qa/internal/l2switch"
	"github.com/shoal-hci/shoal/qa/internal/netns"
	vnetns "github.com/vishvananda/netns"
)

// The DHCP segment. dnsmasq serves it from dhcpHost, which also has the
// backplane prefix's ::1 so the API forward can reach nodes' backplane
// addresses.
const (
	dhcpHost     = "10.77.0.1/24"
	dhcpRange    = "10.77.0.100,10.77.0.250,1h"
	dhcpSubnet   = "10.77.0.0/24"
	backHost     = "fd53:686f:616c::1/64"
	dhcpPortName = "dhcp"
)

func dhcpNetns(tag string) string { return netnsPrefix + tag + "-dhcp" }
func tapName(tag string) string   { return "shv" + tag }

// apiTargetPath holds node1's node API address (host:port), written once
// it is known; the forward reads it for every connection.
func apiTargetPath(dir string) string { return filepath.Join(dir, "api-target") }

// ServeSwitch is the switch daemon of the cluster in dir (`shoal-qa vm
// switchd`): it runs the L2 switch with a port per NIC slot, the DHCP
// server and its tap, the API forward and the control socket until ctx
// ends, then removes what it made. It returns nil on cancellation.
func ServeSwitch(ctx context.Context, dir string, log *slog.Logger) error {
	st, err := loadState(dir)
	if err != nil {
		return err
	}
	swDir := filepath.Join(dir, "sw")
	if err := os.MkdirAll(swDir, 0o755); err != nil {
		return err
	}
	sw := l2switch.New(swDir)
	ports := map[string]*l2switch.Port{}
	for slot := 1; slot <= st.Slots; slot++ {
		for k := range nicCount {
			p, err := sw.AddPort(portName(slot, k))
			if err != nil {
				return err
			}
			ports[p.Name] = p
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// On the way out: stop every part, wait for them, then undo what was
	// made (in reverse).
	var undo []func()
	defer func() {
		cancel()
		wg.Wait()
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}()
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				log.Error("switch daemon part stopped", "part", name, "err", err)
				cancel()
			}
		}()
	}

	if st.DHCP {
		p, err := sw.AddPort(dhcpPortName)
		if err != nil {
			return err
		}
		ports[p.Name] = p
		tap, err := setupDHCPNetns(ctx, st.Tag)
		if err != nil {
			return err
		}
		undo = append(undo, func() {
			tap.Close()
			netns.Delete(context.Background(), dhcpNetns(st.Tag))
		})
		dnsmasq, err := startDNSMasq(st)
		if err != nil {
			return err
		}
		run("dnsmasq", func() error {
			done := make(chan error, 1)
			go func() { done <- dnsmasq.Wait() }()
			select {
			case err := <-done:
				return fmt.Errorf("dnsmasq exited (see %s): %v", filepath.Join(dir, "dnsmasq.log"), err)
			case <-ctx.Done():
				dnsmasq.Process.Signal(syscall.SIGTERM)
				<-done
				return nil
			}
		})
		conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p.Peer, Net: "unixgram"})
		if err != nil {
			return fmt.Errorf("tap side of the DHCP port: %w", err)
		}
		run("tap", func() error { return bridgeTap(ctx, tap, conn, p.Local) })
	}

	if st.APIPort > 0 {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(st.APIPort)))
		if err != nil {
			return fmt.Errorf("forward of node1's API: %w (pick another with --api-port)", err)
		}
		run("forward", func() error { return forwardAPI(ctx, ln, dir, dhcpNetns(st.Tag), log) })
	}

	os.Remove(controlPath(dir))
	ctl, err := net.Listen("unix", controlPath(dir))
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	run("control", func() error { return serveControl(ctx, ctl, ports) })
	run("switch", func() error { return sw.Run(ctx) })
	log.Info("switch daemon ready", "dir", dir, "ports", len(ports), "dhcp", st.DHCP, "api_port", st.APIPort)
	<-ctx.Done()
	return nil
}

// setupDHCPNetns makes the DHCP namespace with a tap in it carrying the
// segment's host addresses.
func setupDHCPNetns(ctx context.Context, tag string) (*os.File, error) {
	ns := dhcpNetns(tag)
	if names, _ := netns.List(ctx, ns); len(names) > 0 {
		netns.Delete(ctx, ns)
	}
	ip := func(args ...string) error { _, err := netns.Run(ctx, "ip", args...); return err }
	if err := ip("netns", "add", ns); err != nil {
		return nil, err
	}
	tap, err := openTap(tapName(tag))
	if err != nil {
		return nil, err
	}
	steps := [][]string{
		{"link", "set", tapName(tag), "netns", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", dhcpHost, "dev", tapName(tag)},
		{"-n", ns, "addr", "add", backHost, "dev", tapName(tag), "nodad"},
		{"-n", ns, "link", "set", tapName(tag), "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			tap.Close()
			return nil, err
		}
	}
	return tap, nil
}

func startDNSMasq(st *State) (*exec.Cmd, error) {
	logf, err := os.OpenFile(filepath.Join(st.Dir, "dnsmasq.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", dhcpNetns(st.Tag),
		"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface="+tapName(st.Tag), "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range="+dhcpRange, "--dhcp-authoritative",
		"--dhcp-leasefile="+filepath.Join(st.Dir, "dnsmasq.leases"),
		"--log-facility="+filepath.Join(st.Dir, "dnsmasq.log"), "--log-dhcp",
		"--user=root", "--group=root")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), EnvTag+"="+st.Tag)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dnsmasq (Debian dnsmasq-base): %w", err)
	}
	return cmd, nil
}

// bridgeTap moves frames between the tap and the switch port, as QEMU
// would for a guest NIC.
func bridgeTap(ctx context.Context, tap *os.File, conn *net.UnixConn, swSock string) error {
	sw := &net.UnixAddr{Name: swSock, Net: "unixgram"}
	go func() { <-ctx.Done(); conn.Close(); tap.Close() }()
	errc := make(chan error, 1)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				errc <- err
				return
			}
			tap.Write(buf[:n])
		}
	}()
	buf := make([]byte, 65536)
	for {
		n, err := tap.Read(buf)
		if err != nil {
			<-errc
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read tap: %w", err)
		}
		conn.WriteToUnix(buf[:n], sw) // the switch may be starting: drop
	}
}

// forwardAPI accepts on ln (host loopback) and connects each client to
// node1's node API inside the DHCP namespace.
func forwardAPI(ctx context.Context, ln net.Listener, dir, ns string, log *slog.Logger) error {
	go func() { <-ctx.Done(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			b, err := os.ReadFile(apiTargetPath(dir))
			if err != nil {
				log.Warn("API forward: node1's address is not known yet (`shoal-qa vm status` learns it)")
				return
			}
			up, err := dialInNetns(ns, strings.TrimSpace(string(b)))
			if err != nil {
				log.Warn("API forward: cannot reach node1", "err", err)
				return
			}
			defer up.Close()
			pipe(ctx, c, up)
		}()
	}
}

func pipe(ctx context.Context, a, b net.Conn) {
	stop := context.AfterFunc(ctx, func() { a.Close(); b.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
}

// dialInNetns connects to addr from inside the named network namespace.
func dialInNetns(name, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := vnetns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := vnetns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if vnetns.Set(orig) == nil {
		runtime.UnlockOSThread() // else the thread dies with this goroutine
	}
	return conn, err
}

func serveControl(ctx context.Context, ln net.Listener, ports map[string]*l2switch.Port) error {
	go func() { <-ctx.Done(); ln.Close() }()
	var mu sync.Mutex // ports' group/delay/down are mirrored here for stats
	mirror := map[string]*PortStats{}
	for n := range ports {
		mirror[n] = &PortStats{}
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var req ctlRequest
			if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
				return
			}
			mu.Lock()
			rep := handleControl(req, ports, mirror)
			mu.Unlock()
			json.NewEncoder(c).Encode(rep)
		}()
	}
}

func handleControl(req ctlRequest, ports map[string]*l2switch.Port, mirror map[string]*PortStats) ctlReply {
	for _, n := range req.Ports {
		if ports[n] == nil {
			return ctlReply{Err: fmt.Sprintf("no switch port %q", n)}
		}
	}
	for _, n := range req.Ports {
		p, m := ports[n], mirror[n]
		switch req.Op {
		case "down", "up":
			p.SetDown(req.Op == "down")
			m.Down = req.Op == "down"
		case "delay":
			p.SetDelay(req.Delay)
			m.Delay = req.Delay
		case "group":
			p.SetGroup(req.Group)
			m.Group = req.Group
		default:
			return ctlReply{Err: fmt.Sprintf("unknown op %q", req.Op)}
		}
	}
	switch req.Op {
	case "ping", "down", "up", "delay", "group":
		return ctlReply{}
	case "stats":
		out := map[string]PortStats{}
		for n, p := range ports {
			s := *mirror[n]
			ps := p.Stats()
			s.Received, s.Sent, s.Dropped = ps.Received, ps.Sent, ps.Dropped
			out[n] = s
		}
		return ctlReply{Stats: out}
	}
	return ctlReply{Err: errors.New("unknown op " + strconv.Quote(req.Op)).Error()}
}
