package dhcpc

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeNet is a Transport and a Host in one: a scripted server and a
// record of what the client did to the machine.
type fakeNet struct {
	mu      sync.Mutex
	up      bool          // server answers
	nak     bool          // server NAKs renewals
	addr    string        // address it hands out
	dur     time.Duration // lease time
	events  []string      // what the client did, in order
	applied string        // address currently installed
}

func (f *fakeNet) lease() Lease {
	return Lease{Address: netip.MustParsePrefix(f.addr), Server: netip.MustParseAddr("10.0.0.1"),
		Router: netip.MustParseAddr("10.0.0.1"), Obtained: time.Now(), Duration: f.dur}
}

func (f *fakeNet) exchange(ctx context.Context, what string) (Lease, error) {
	f.mu.Lock()
	up, nak := f.up, f.nak
	f.events = append(f.events, what)
	f.mu.Unlock()
	if !up {
		// A real exchange times out after a few seconds.
		sleep(ctx, 3*time.Second)
		return Lease{}, errors.New("timeout")
	}
	if nak && what != "acquire" {
		return Lease{}, ErrNAK
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lease(), nil
}

func (f *fakeNet) Acquire(ctx context.Context) (Lease, error) { return f.exchange(ctx, "acquire") }
func (f *fakeNet) Renew(ctx context.Context, l Lease) (Lease, error) {
	return f.exchange(ctx, "renew")
}
func (f *fakeNet) Rebind(ctx context.Context, l Lease) (Lease, error) {
	return f.exchange(ctx, "rebind")
}
func (f *fakeNet) WaitCarrier(ctx context.Context) error { return nil }
func (f *fakeNet) Apply(l Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = l.Address.String()
	return nil
}
func (f *fakeNet) Remove(l Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, "remove "+l.Address.String())
	f.applied = ""
	return nil
}
func (f *fakeNet) ClaimLinkLocal(ctx context.Context) (netip.Prefix, error) {
	sleep(ctx, 5*time.Second)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, "linklocal")
	return netip.MustParsePrefix("169.254.7.9/16"), nil
}
func (f *fakeNet) DropLinkLocal(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, "drop-linklocal")
	return nil
}

func (f *fakeNet) set(fn func(*fakeNet)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeNet) installed() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func (f *fakeNet) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.events
	f.events = nil
	return e
}

type harness struct {
	net    *fakeNet
	mu     sync.Mutex
	status Status
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, f *fakeNet, leaseFile string) *harness {
	h := &harness{net: f, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	cfg := Config{Interface: "eth0", LeaseFile: leaseFile, Transport: f, Host: f, MinRetry: time.Second,
		OnChange: func(s Status) { h.mu.Lock(); h.status = s; h.mu.Unlock() }}
	go func() { h.done <- Run(ctx, cfg) }()
	return h
}

func (h *harness) stop(t *testing.T) {
	h.cancel()
	if err := <-h.done; err != nil {
		t.Errorf("Run returned %v on cancellation, want nil", err)
	}
}

func (h *harness) state() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

func TestRenewAtT1RebindAtT2(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{up: true, addr: "10.0.0.50/24", dur: 100 * time.Second}
		h := start(t, f, "")
		synctest.Wait()
		if got := h.state(); got.State != StateBound || f.installed() != "10.0.0.50/24" {
			t.Fatalf("after start: state %q applied %q, want bound with the address", got.State, f.installed())
		}
		time.Sleep(51 * time.Second) // past T1 = 50 s
		synctest.Wait()
		if diff := cmp.Diff([]string{"acquire", "renew"}, f.take()); diff != "" {
			t.Errorf("events by T1 (-want +got):\n%s", diff)
		}
		// Server goes away: renewals fail until T2 (87.5 s after the
		// renewal at 51 s, so 138.5 s), then the client rebinds, until
		// the lease ends at 151 s.
		f.set(func(f *fakeNet) { f.up = false })
		time.Sleep(94 * time.Second)
		synctest.Wait()
		ev := f.take()
		if !contains(ev, "rebind") {
			t.Errorf("no rebind attempt after T2: %v", ev)
		}
		if got := h.state(); got.State != StateRebinding && got.State != StateBound {
			t.Errorf("state before expiry %q, want rebinding", got.State)
		}
		if f.installed() == "" {
			t.Error("address removed before the lease expired")
		}
		time.Sleep(30 * time.Second) // past expiry at 151 s
		synctest.Wait()
		ev = f.take()
		if !contains(ev, "remove 10.0.0.50/24") {
			t.Errorf("lease not removed at expiry: %v", ev)
		}
		// Server back: bound again.
		f.set(func(f *fakeNet) { f.up = true })
		time.Sleep(70 * time.Second)
		synctest.Wait()
		if got := h.state(); got.State != StateBound || f.installed() != "10.0.0.50/24" {
			t.Errorf("server back: state %q applied %q, want bound", got.State, f.installed())
		}
		h.stop(t)
	})
}

func TestNAKStartsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{up: true, addr: "10.0.0.50/24", dur: 100 * time.Second}
		h := start(t, f, "")
		synctest.Wait()
		f.set(func(f *fakeNet) { f.nak = true; f.addr = "10.0.0.60/24" })
		time.Sleep(60 * time.Second)
		synctest.Wait()
		ev := f.take()
		want := []string{"acquire", "renew", "remove 10.0.0.50/24", "acquire"}
		if diff := cmp.Diff(want, ev); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		if got := h.state(); got.State != StateBound || got.Lease == nil || got.Lease.Address.String() != "10.0.0.60/24" {
			t.Errorf("after NAK: %+v, want bound to the new address", got)
		}
		h.stop(t)
	})
}

func TestLinkLocalFallbackThenLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{up: false, addr: "10.0.0.50/24", dur: time.Hour}
		h := start(t, f, "")
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := h.state(); got.LinkLocal != "169.254.7.9/16" || got.Lease != nil {
			t.Fatalf("no server: %+v, want a link-local address and no lease", got)
		}
		f.set(func(f *fakeNet) { f.up = true })
		time.Sleep(70 * time.Second)
		synctest.Wait()
		got := h.state()
		if got.State != StateBound || got.LinkLocal != "" {
			t.Errorf("server back: %+v, want bound without link-local", got)
		}
		if ev := f.take(); !contains(ev, "drop-linklocal") {
			t.Errorf("link-local address not dropped: %v", ev)
		}
		h.stop(t)
	})
}

func TestLeaseSurvivesRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "lease.json")
		f := &fakeNet{up: true, addr: "10.0.0.50/24", dur: time.Hour}
		h := start(t, f, file)
		synctest.Wait()
		h.stop(t)
		f.take()
		// Restart with the server down: the saved lease is applied at once
		// and kept.
		f.set(func(f *fakeNet) { f.up = false; f.applied = "" })
		h = start(t, f, file)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		got := h.state()
		if got.Lease == nil || !got.Restored || f.installed() != "10.0.0.50/24" {
			t.Errorf("after restart: %+v applied %q, want the restored lease bound", got, f.installed())
		}
		if ev := f.take(); !contains(ev, "renew") || contains(ev, "acquire") {
			t.Errorf("after restart: events %v, want a verifying renewal and no new acquisition", ev)
		}
		h.stop(t)
	})
}

func TestParseLease(t *testing.T) {
	good := `{"address":"10.0.0.5/24","server":"10.0.0.1","obtained":"2026-01-01T00:00:00Z","duration":3600000000000}`
	l, err := ParseLease([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if l.T1 != 30*time.Minute || l.T2 != 3150*time.Second {
		t.Errorf("defaults T1 %v T2 %v, want 30m and 52m30s", l.T1, l.T2)
	}
	for _, bad := range []string{``, `{}`, `{"address":"fd00::1/64","server":"10.0.0.1","duration":1}`, `{"address":"10.0.0.5/24","server":"10.0.0.1"}`} {
		if _, err := ParseLease([]byte(bad)); !errors.Is(err, ErrBadLease) {
			t.Errorf("ParseLease(%q) = %v, want ErrBadLease", bad, err)
		}
	}
}

func FuzzParseLease(f *testing.F) {
	f.Add([]byte(`{"address":"10.0.0.5/24","server":"10.0.0.1","obtained":"2026-01-01T00:00:00Z","duration":3600000000000,"t1":5,"t2":4}`))
	f.Add([]byte(`{"address":"10.0.0.5/24","server":"10.0.0.1","duration":1,"ack":"AAEC"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLease(b)
		if err != nil {
			if !errors.Is(err, ErrBadLease) {
				t.Fatalf("error %v is not ErrBadLease", err)
			}
			return
		}
		if !(0 < l.T1 && l.T1 < l.T2 && l.T2 < l.Duration) && l.Duration > 8 {
			t.Fatalf("timers out of order: T1 %v T2 %v lease %v", l.T1, l.T2, l.Duration)
		}
	})
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
