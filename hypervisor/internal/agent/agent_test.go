package agent_test

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/hypervisor/internal/agent"
	"github.com/shoal-hci/shoal/hypervisor/internal/agent/agenttest"
)

// host is the test's side of one connection to the agent.
type host struct {
	t   *testing.T
	c   io.ReadWriteCloser
	dec *agent.Decoder
	id  uint64
}

func (h *host) next() agent.Message {
	h.t.Helper()
	m, err := h.dec.Next()
	if err != nil {
		h.t.Fatalf("read from agent: %v", err)
	}
	return m
}

// nextOf skips heartbeats and address notices until a message of type typ.
func (h *host) nextOf(typ string) agent.Message {
	h.t.Helper()
	for {
		if m := h.next(); m.Type == typ {
			return m
		}
	}
}

func (h *host) ask(typ string, f *agent.Freeze) agent.Message {
	h.t.Helper()
	h.id++
	if err := agent.Encode(h.c, agent.Message{Type: typ, ID: h.id, Freeze: f}); err != nil {
		h.t.Fatal(err)
	}
	r := h.nextOf(agent.TypeReply)
	if r.ID != h.id {
		h.t.Fatalf("reply to %d, want %d", r.ID, h.id)
	}
	return r
}

// start runs an agent on a Pipe until the test ends.
func start(t *testing.T, sys agent.System) *agenttest.Pipe {
	t.Helper()
	p := agenttest.NewPipe()
	a, err := agent.New(agent.Config{Transports: []agent.Transport{p.Transport()}, System: sys, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return p
}

func dial(t *testing.T, p *agenttest.Pipe) *host {
	t.Helper()
	c, err := p.Dial(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &host{t: t, c: c, dec: agent.NewDecoder(c)}
}

var eth0 = agent.Addr{Interface: "eth0", Prefix: netip.MustParsePrefix("10.0.2.15/24")}
var prefixCmp = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestAgentGreetsAndBeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := agenttest.NewSystem("boot-1", 1)
		sys.SetAddrs(eth0)
		h := dial(t, start(t, sys))

		hello := h.next()
		if diff := cmp.Diff(&agent.Hello{AgentVersion: "test", BootID: "boot-1", Hostname: "fake-guest"}, hello.Hello); diff != "" {
			t.Errorf("hello (-want +got):\n%s", diff)
		}
		ips := h.next()
		if diff := cmp.Diff(&agent.IPs{Addrs: []agent.Addr{eth0}}, ips.IPs, prefixCmp); diff != "" {
			t.Errorf("first ips (-want +got):\n%s", diff)
		}
		var seqs []uint64
		var lastUptime int64
		for range 3 {
			hb := h.nextOf(agent.TypeHeartbeat)
			seqs = append(seqs, hb.Heartbeat.Seq)
			lastUptime = hb.Heartbeat.UptimeMS
		}
		if diff := cmp.Diff([]uint64{1, 2, 3}, seqs); diff != "" {
			t.Errorf("heartbeat seqs (-want +got):\n%s", diff)
		}
		if lastUptime != 2000 {
			t.Errorf("third heartbeat at uptime %d ms, want 2000 (one a second, the first at once)", lastUptime)
		}

		// A new address is reported by the next heartbeat's check.
		v6 := agent.Addr{Interface: "eth0", Prefix: netip.MustParsePrefix("fd00::5/64")}
		sys.SetAddrs(eth0, v6)
		changed := h.nextOf(agent.TypeIPs)
		if diff := cmp.Diff(&agent.IPs{Addrs: []agent.Addr{eth0, v6}}, changed.IPs, prefixCmp); diff != "" {
			t.Errorf("after the change (-want +got):\n%s", diff)
		}

		r := h.ask(agent.TypeGetIPs, nil)
		if diff := cmp.Diff(&agent.IPs{Addrs: []agent.Addr{eth0, v6}}, r.IPs, prefixCmp); diff != "" {
			t.Errorf("get-ips (-want +got):\n%s", diff)
		}
		if r := h.ask(agent.TypeGetHello, nil); r.Hello == nil || r.Hello.BootID != "boot-1" {
			t.Errorf("get-hello replied %+v", r)
		}
		if r := h.ask("reboot-into-bios", nil); r.Error == "" {
			t.Error("an unknown request got no error")
		}
	})
}

func TestAgentFreezeThaw(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := agenttest.NewSystem("b", 2)
		h := dial(t, start(t, sys))

		r := h.ask(agent.TypeFreeze, nil)
		if r.Error != "" || r.Freeze == nil || r.Freeze.Filesystems != 2 {
			t.Fatalf("freeze replied %+v", r)
		}
		if _, _, _, frozen := sys.Counts(); !frozen {
			t.Fatal("not frozen after the reply")
		}
		// A second freeze re-arms the timer and freezes nothing more.
		if r := h.ask(agent.TypeFreeze, nil); r.Error != "" || r.Freeze.Filesystems != 0 {
			t.Errorf("second freeze replied %+v", r)
		}
		r = h.ask(agent.TypeThaw, nil)
		if r.Error != "" || r.Freeze == nil || r.Freeze.Filesystems != 2 {
			t.Errorf("thaw replied %+v", r)
		}

		// Without a thaw the agent thaws by itself after the timeout.
		h.ask(agent.TypeFreeze, &agent.Freeze{TimeoutMS: 5000})
		time.Sleep(4999 * time.Millisecond)
		synctest.Wait()
		if _, _, _, frozen := sys.Counts(); !frozen {
			t.Fatal("thawed before the timeout")
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		freezes, thaws, _, frozen := sys.Counts()
		if frozen || freezes != 2 || thaws != 2 {
			t.Errorf("after the timeout: frozen %v, %d freezes, %d thaws; want thawed, 2, 2", frozen, freezes, thaws)
		}
	})
}

func TestAgentThawsWhenStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := agenttest.NewSystem("b", 1)
		p := agenttest.NewPipe()
		a, err := agent.New(agent.Config{Transports: []agent.Transport{p.Transport()}, System: sys})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- a.Run(ctx) }()
		h := dial(t, p)
		h.ask(agent.TypeFreeze, nil)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
		if _, _, _, frozen := sys.Counts(); frozen {
			t.Error("the agent stopped and left the file systems frozen")
		}
	})
}

func TestAgentShutdownRepliesThenPowersOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := agenttest.NewSystem("b", 0)
		h := dial(t, start(t, sys))
		if r := h.ask(agent.TypeShutdown, nil); r.Error != "" {
			t.Fatalf("shutdown replied %q", r.Error)
		}
		synctest.Wait()
		if _, _, poweroffs, _ := sys.Counts(); poweroffs != 1 {
			t.Errorf("%d power-offs, want 1", poweroffs)
		}
	})
}

// TestAgentReconnects: when the host goes away the agent opens its
// transport again and greets the next host.
func TestAgentReconnects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := start(t, agenttest.NewSystem("boot-7", 0))
		for i := range 3 {
			h := dial(t, p)
			if m := h.next(); m.Type != agent.TypeHello || m.Hello.BootID != "boot-7" {
				t.Fatalf("connection %d began with %+v", i, m)
			}
			h.nextOf(agent.TypeHeartbeat)
			h.c.Close()
		}
	})
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []agent.Config{
		{HeartbeatInterval: -1},
		{FreezeTimeout: time.Hour, MaxFreeze: time.Minute},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v passed Validate", c)
		}
		if _, err := agent.New(c); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
	if err := agent.DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig: %v", err)
	}
}

func TestNoTransport(t *testing.T) {
	a, err := agent.New(agent.Config{Transports: []agent.Transport{agent.Serial{Port: "none", Dev: t.TempDir(), Sys: t.TempDir()}}, RetryInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.Run(ctx); err != nil {
		t.Errorf("Run without a transport returned %v, want nil at cancellation", err)
	}
	if _, err := (agent.Serial{Port: "none", Dev: t.TempDir(), Sys: t.TempDir()}).Open(ctx); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("opening a missing port: %v", err)
	}
}
