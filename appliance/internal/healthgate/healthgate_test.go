package healthgate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shoal-hci/shoal/peer/client"
)

type fakeUnits struct {
	mu                sync.Mutex
	state             map[string]string
	calls             int
	becomeActiveAfter int // calls; 0 = never changes
}

func (f *fakeUnits) ActiveState(ctx context.Context, unit string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.becomeActiveAfter > 0 && f.calls > f.becomeActiveAfter {
		return "active", nil
	}
	s, ok := f.state[unit]
	if !ok {
		return "", errors.New("no such unit")
	}
	return s, nil
}

// node builds a fake node root: units installed, state partition device,
// mountinfo.
func node(t *testing.T, units []string, mountVar string) Config {
	t.Helper()
	root, err := os.MkdirTemp("", "hg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	c := DefaultConfig()
	c.Root = root
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range units {
		write(filepath.Join(c.UnitDir, u), "[Unit]\n")
	}
	write(c.StateRepart, "[Partition]\n")
	write("dev/vda4", "")
	write("dev/vda2", "")
	if err := os.MkdirAll(filepath.Join(root, "dev/disk/by-partlabel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../vda4", filepath.Join(root, "dev/disk/by-partlabel/shoal-state")); err != nil {
		t.Fatal(err)
	}
	mounts := "22 1 0:21 / / ro,relatime - squashfs /dev/vda2 ro\n"
	if mountVar != "" {
		mounts += "30 22 254:4 / /var rw,relatime shared:9 - ext4 " + mountVar + " rw\n"
	}
	write("proc/self/mountinfo", mounts)
	return c
}

func names(rs []Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestOnce(t *testing.T) {
	tests := []struct {
		name       string
		units      []string
		mountVar   string
		state      map[string]string
		wantRun    []string
		wantFailed []string
	}{
		{
			name:     "no daemons installed: only the state partition",
			mountVar: "/dev/vda4",
			wantRun:  []string{"state partition"},
		},
		{
			name:       "var not mounted",
			wantRun:    []string{"state partition"},
			wantFailed: []string{"state partition"},
		},
		{
			name:       "var from the wrong device",
			mountVar:   "/dev/vda2",
			wantRun:    []string{"state partition"},
			wantFailed: []string{"state partition"},
		},
		{
			name:       "netd active, scribe failed",
			units:      []string{"shoal-netd.service", "shoal-scribe.service"},
			mountVar:   "/dev/vda4",
			state:      map[string]string{"shoal-netd.service": "active", "shoal-scribe.service": "failed"},
			wantRun:    []string{"state partition", "shoal-netd.service", "shoal-scribe.service"},
			wantFailed: []string{"shoal-scribe.service"},
		},
		{
			name:       "peer installed but its socket is silent",
			units:      []string{"shoal-peer.service"},
			mountVar:   "/dev/vda4",
			state:      map[string]string{"shoal-peer.service": "active"},
			wantRun:    []string{"state partition", "shoal-peer.service", "peer joined or announcing"},
			wantFailed: []string{"peer joined or announcing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := node(t, tt.units, tt.mountVar)
			c.Units = &fakeUnits{state: tt.state}
			got := Once(context.Background(), c, Checks())
			if diff := cmp.Diff(tt.wantRun, names(got)); diff != "" {
				t.Errorf("checks run (-want +got)\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantFailed, names(Failed(got))); diff != "" {
				t.Errorf("checks failed (-want +got)\n%s (%v)", diff, Failed(got))
			}
		})
	}
}

// servePeer answers GET /v1/status on the node's peer socket with st.
func servePeer(t *testing.T, c Config, st client.Status) {
	t.Helper()
	sock := filepath.Join(c.Root, c.PeerSocket)
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(st) })
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

func TestPeerCheckOverTheSocket(t *testing.T) {
	tests := []struct {
		name     string
		st       client.Status
		wantFail bool
	}{
		{name: "member with an alive peer", st: member(client.StateAlive, client.StateAlive)},
		{name: "unclaimed and announcing", st: client.Status{Phase: client.PhaseUnclaimed, Self: self}},
		{name: "member hearing nobody", st: member(client.StateAlive, client.StateFailed), wantFail: true},
		{name: "removed", st: client.Status{Phase: client.PhaseRemoved, Self: self}, wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := node(t, []string{"shoal-peer.service"}, "/dev/vda4")
			c.Units = &fakeUnits{state: map[string]string{"shoal-peer.service": "active"}}
			servePeer(t, c, tt.st)
			failed := Failed(Once(context.Background(), c, Checks()))
			if got := len(failed) != 0; got != tt.wantFail {
				t.Errorf("failed checks %v, want failure %v", failed, tt.wantFail)
			}
		})
	}
}

var self = client.Member{ID: "n1", Name: "shoal-n1", State: client.StateAlive, Gossip: "[fd53:686f:616c::1]:7946", API: "[fd53:686f:616c::1]:7443"}

// member is node n1's status in a cluster whose members have the given
// states (n1 first).
func member(states ...string) client.Status {
	st := client.Status{Phase: client.PhaseMember, ClusterID: "c1", Self: self}
	for i, s := range states {
		st.Members = append(st.Members, client.Member{ID: fmt.Sprintf("n%d", i+1), State: s})
	}
	return st
}

func TestPeerReady(t *testing.T) {
	tests := []struct {
		name    string
		st      client.Status
		wantErr string // substring; "" means healthy
	}{
		{name: "member alone in its cluster", st: member(client.StateAlive)},
		{name: "member of three, all alive", st: member(client.StateAlive, client.StateAlive, client.StateAlive)},
		{name: "member, one other alive, one failed", st: member(client.StateAlive, client.StateFailed, client.StateAlive)},
		{name: "member hearing nobody", st: member(client.StateAlive, client.StateFailed, client.StateSuspect), wantErr: "none of the 2 other members is alive"},
		{name: "member not alive itself", st: member(client.StateLeaving, client.StateAlive), wantErr: "not alive in its own member list"},
		{name: "member not in its own list", st: client.Status{Phase: client.PhaseMember, ClusterID: "c1", Self: self,
			Members: []client.Member{{ID: "n2", State: client.StateAlive}}}, wantErr: "not alive in its own member list"},
		{name: "member without cluster ID", st: client.Status{Phase: client.PhaseMember, Self: self}, wantErr: "no cluster ID"},
		{name: "unclaimed, announcing", st: client.Status{Phase: client.PhaseUnclaimed, Self: self}},
		{name: "unclaimed without addresses", st: client.Status{Phase: client.PhaseUnclaimed, Self: client.Member{ID: "n1"}}, wantErr: "not announcing"},
		{name: "joining: waits for an operator", st: client.Status{Phase: client.PhaseJoining, Self: self}},
		{name: "removed", st: client.Status{Phase: client.PhaseRemoved, Self: self}, wantErr: "neither a member nor unclaimed"},
		{name: "no phase", st: client.Status{}, wantErr: "no phase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := peerReady(tt.st)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("peerReady: %v, want healthy", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("peerReady: %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestWaitRetriesUntilHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := node(t, []string{"shoal-netd.service"}, "/dev/vda4")
		units := &fakeUnits{state: map[string]string{"shoal-netd.service": "activating"}, becomeActiveAfter: 3}
		c.Units = units
		start := time.Now()
		got, err := Wait(context.Background(), c, Checks())
		if err != nil {
			t.Fatal(err)
		}
		if len(Failed(got)) != 0 {
			t.Errorf("Wait returned failures: %v", Failed(got))
		}
		if units.calls != 4 {
			t.Errorf("unit state asked %d times, want 4", units.calls)
		}
		if elapsed := time.Since(start); elapsed != 3*c.Interval {
			t.Errorf("waited %v of fake time, want 3 intervals", elapsed)
		}
	})
}

func TestWaitGivesUpWithCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := node(t, []string{"shoal-netd.service"}, "/dev/vda4")
		c.Units = &fakeUnits{state: map[string]string{"shoal-netd.service": "failed"}}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := Wait(ctx, c, Checks())
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "shoal-netd.service is failed") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default: %v", err)
	}
	c := DefaultConfig()
	c.Root = ""
	if err := c.Validate(); err == nil {
		t.Error("empty Root accepted")
	}
	c = DefaultConfig()
	c.Interval = -1
	if err := c.Validate(); err == nil {
		t.Error("negative Interval accepted")
	}
}
