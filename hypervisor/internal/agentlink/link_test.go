package agentlink_test

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
	"github.com/shoal-hci/shoal/hypervisor/internal/agentlink"
)

var eth0 = agent.Addr{Interface: "eth0", Prefix: netip.MustParsePrefix("10.0.2.15/24")}
var prefixCmp = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

// goRun runs run in a goroutine until stop (or the test's end) cancels
// it and waits for it; run must return nil on cancellation.
func goRun(t *testing.T, run func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// runAgent runs a real agent on tr until stop is called.
func runAgent(t *testing.T, tr agent.Transport, sys agent.System) (stop func()) {
	t.Helper()
	a, err := agent.New(agent.Config{Transports: []agent.Transport{tr}, System: sys, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return goRun(t, a.Run)
}

func runLink(t *testing.T, dial func(context.Context) (io.ReadWriteCloser, error)) (*agentlink.Link, func()) {
	t.Helper()
	l, err := agentlink.New(agentlink.Config{Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	return l, goRun(t, l.Run)
}

// waitFor waits (on the bubble's clock) until cond holds on the link's status.
func waitFor(t *testing.T, l *agentlink.Link, what string, cond func(agentlink.Status) bool) agentlink.Status {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		ch := l.Changed()
		if s := l.Status(); cond(s) {
			return s
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no %s within a minute: %+v", what, l.Status())
		}
	}
}

func TestLinkFollowsAgent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := agenttest.NewPipe()
		sys := agenttest.NewSystem("boot-1", 3)
		sys.SetAddrs(eth0)
		runAgent(t, p.Transport(), sys)
		l, _ := runLink(t, p.Dial)

		s := waitFor(t, l, "third heartbeat", func(s agentlink.Status) bool { return s.Seq >= 3 })
		want := agentlink.Status{Connected: true, AgentVersion: "test", BootID: "boot-1", Hostname: "fake-guest",
			LastHeartbeat: time.Now(), Seq: 3, Uptime: 2 * time.Second, IPs: []agent.Addr{eth0}}
		if diff := cmp.Diff(want, s, prefixCmp); diff != "" {
			t.Errorf("status (-want +got):\n%s", diff)
		}
		if l.BootID() != "boot-1" || l.Uptime() != 2*time.Second || !l.LastHeartbeat().Equal(time.Now()) || len(l.IPs()) != 1 {
			t.Errorf("accessors disagree with Status: %q %s %s %v", l.BootID(), l.Uptime(), l.LastHeartbeat(), l.IPs())
		}

		ctx := t.Context()
		if n, err := l.Freeze(ctx, 10*time.Second); err != nil || n != 3 {
			t.Errorf("Freeze = %d, %v; want 3", n, err)
		}
		if n, err := l.Thaw(ctx); err != nil || n != 3 {
			t.Errorf("Thaw = %d, %v; want 3", n, err)
		}
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		synctest.Wait()
		freezes, thaws, poweroffs, frozen := sys.Counts()
		if freezes != 1 || thaws != 1 || poweroffs != 1 || frozen {
			t.Errorf("guest saw %d freezes, %d thaws, %d power-offs, frozen %v; want 1, 1, 1, false", freezes, thaws, poweroffs, frozen)
		}
	})
}

// TestLinkAgentRestart: a new agent (a rebooted guest) is followed.
func TestLinkAgentRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := agenttest.NewPipe()
		stop := runAgent(t, p.Transport(), agenttest.NewSystem("boot-1", 0))
		l, _ := runLink(t, p.Dial)
		waitFor(t, l, "hello", func(s agentlink.Status) bool { return s.BootID == "boot-1" && s.Seq > 0 })
		stop()
		waitFor(t, l, "disconnect", func(s agentlink.Status) bool { return !s.Connected })
		runAgent(t, p.Transport(), agenttest.NewSystem("boot-2", 0))
		s := waitFor(t, l, "the new boot", func(s agentlink.Status) bool { return s.BootID == "boot-2" && s.Connected })
		if s.Uptime > time.Second {
			t.Errorf("uptime %s after the reboot: the old agent's figure", s.Uptime)
		}
	})
}

// TestLinkResyncsAfterHostRestart: over a chardev the agent never sees
// the host go; a new host (daemon restart) still learns hello and IPs
// at once, by asking, instead of waiting for the agent to say them.
func TestLinkResyncsAfterHostRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cd := agenttest.NewChardev()
		sys := agenttest.NewSystem("boot-9", 0)
		sys.SetAddrs(eth0)
		runAgent(t, cd.Transport(), sys)
		l1, stop1 := runLink(t, cd.Dial)
		waitFor(t, l1, "hello", func(s agentlink.Status) bool { return s.BootID == "boot-9" && len(s.IPs) == 1 })
		stop1()

		l2, _ := runLink(t, cd.Dial)
		s := waitFor(t, l2, "resync", func(s agentlink.Status) bool { return s.BootID == "boot-9" && len(s.IPs) == 1 })
		if diff := cmp.Diff([]agent.Addr{eth0}, s.IPs, prefixCmp); diff != "" {
			t.Errorf("IPs after resync (-want +got):\n%s", diff)
		}
		// Heartbeats go on, without a new agent session.
		before := s.Seq
		s = waitFor(t, l2, "heartbeat", func(s agentlink.Status) bool { return s.Seq > before && s.Seq > 1 })
		if s.Seq == 1 {
			t.Error("the agent restarted its session; the test wanted it not to notice")
		}
	})
}

func TestLinkRequestWaitsForConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := agenttest.NewPipe()
		l, _ := runLink(t, p.Dial)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := l.Thaw(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Thaw without an agent: %v, want a deadline error", err)
		}
		go func() {
			time.Sleep(5 * time.Second)
			runAgent(t, p.Transport(), agenttest.NewSystem("late", 1))
		}()
		if n, err := l.Thaw(t.Context()); err != nil || n != 0 {
			t.Errorf("Thaw once the agent came: %d, %v", n, err)
		}
	})
}

func TestLinkDisconnectFailsPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A fake agent that reads requests and hangs up instead of replying.
		p := agenttest.NewPipe()
		go func() {
			c, err := p.Transport().Open(t.Context())
			if err != nil {
				return
			}
			d := agent.NewDecoder(c)
			for {
				m, err := d.Next()
				if err != nil {
					return
				}
				if m.Type == agent.TypeShutdown {
					c.Close()
					return
				}
			}
		}()
		l, _ := runLink(t, p.Dial)
		if err := l.Shutdown(t.Context()); !errors.Is(err, agentlink.ErrDisconnected) {
			t.Errorf("Shutdown cut off: %v, want ErrDisconnected", err)
		}
	})
}

func TestLinkAgentError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := agenttest.NewPipe()
		sys := agenttest.NewSystem("b", 1)
		runAgent(t, p.Transport(), sys)
		l, _ := runLink(t, p.Dial)
		if _, err := l.Thaw(t.Context()); err != nil {
			t.Fatal(err)
		}
		// The fake refuses to freeze twice; the agent does not ask it to.
		if _, err := l.Freeze(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		if n, err := l.Freeze(t.Context(), 0); err != nil || n != 0 {
			t.Errorf("second Freeze = %d, %v", n, err)
		}
	})
}

func TestLinkStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, stop := runLink(t, agenttest.NewPipe().Dial)
		stop()
		if err := l.Shutdown(t.Context()); !errors.Is(err, agentlink.ErrStopped) {
			t.Errorf("Shutdown on a stopped link: %v, want ErrStopped", err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []agentlink.Config{{}, {Path: "x", RetryInterval: -1}} {
		if _, err := agentlink.New(c); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
	if err := agentlink.DefaultConfig("/run/x/agent.sock").Validate(); err != nil {
		t.Error(err)
	}
}
