package healthgate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
)

// Config says where the gate looks. The zero value is not usable; start
// from DefaultConfig.
type Config struct {
	// Root is the root of the node's file system ("/" on a node; a temp dir
	// in tests). Every path below is inside it.
	Root string
	// UnitDir holds the installed units, relative to Root.
	UnitDir string
	// PeerSocket is the peer's local API socket, relative to Root.
	PeerSocket string
	// StateRepart is the repart definition of the state partition; the
	// state check applies only where it exists (on an appliance image).
	StateRepart string
	// StateLabel is the GPT partition label of the state partition and
	// StateMount where it is mounted.
	StateLabel, StateMount string
	// Units reports the ActiveState of a unit. Nil means `systemctl show`.
	Units UnitStater
	// Interval is the pause between rounds in Wait. Zero means 2s.
	Interval time.Duration
	// Log receives a line whenever the set of failing checks changes. Nil
	// discards.
	Log *slog.Logger
}

// UnitStater reports a systemd unit's ActiveState ("active", "failed", …).
type UnitStater interface {
	ActiveState(ctx context.Context, unit string) (string, error)
}

// DefaultConfig is the gate of a real node.
func DefaultConfig() Config {
	return Config{
		Root:        "/",
		UnitDir:     "usr/lib/systemd/system",
		PeerSocket:  "run/shoal/peer.sock",
		StateRepart: "usr/lib/repart.d/50-shoal-state.conf",
		StateLabel:  "shoal-state",
		StateMount:  "/var",
		Interval:    2 * time.Second,
	}
}

// Validate reports a Config that cannot work.
func (c Config) Validate() error {
	if c.Root == "" || c.UnitDir == "" || c.PeerSocket == "" || c.StateRepart == "" || c.StateLabel == "" || c.StateMount == "" {
		return errors.New("health gate config: Root, UnitDir, PeerSocket, StateRepart, StateLabel and StateMount are required")
	}
	if c.Interval < 0 {
		return fmt.Errorf("health gate config: negative Interval %v", c.Interval)
	}
	return nil
}

func (c Config) path(rel string) string { return filepath.Join(c.Root, rel) }

func (c Config) installed(unit string) bool {
	_, err := os.Stat(filepath.Join(c.path(c.UnitDir), unit))
	return err == nil
}

// Check is one condition of node health.
type Check struct {
	Name string
	// Applies says whether the check is meaningful on this node.
	Applies func(c Config) bool
	// Run returns nil when the condition holds, or what is wrong.
	Run func(ctx context.Context, c Config) error
}

// Checks is the gate, in order. Later issues append to it.
func Checks() []Check {
	checks := []Check{{
		Name:    "state partition",
		Applies: func(c Config) bool { return exists(c.path(c.StateRepart)) },
		Run:     checkState,
	}}
	for _, d := range []string{"netd", "peer", "scribe", "hypervisor"} {
		unit := "shoal-" + d + ".service"
		checks = append(checks, Check{
			Name:    unit,
			Applies: func(c Config) bool { return c.installed(unit) },
			Run:     func(ctx context.Context, c Config) error { return checkActive(ctx, c, unit) },
		})
	}
	checks = append(checks, Check{
		Name:    "peer joined or announcing",
		Applies: func(c Config) bool { return c.installed("shoal-peer.service") },
		Run:     checkPeer,
	})
	return checks
}

// Result is the outcome of one check.
type Result struct {
	Name string
	Err  error // nil: passed
}

// Once runs every check that applies and returns their results.
func Once(ctx context.Context, c Config, checks []Check) []Result {
	var out []Result
	for _, ch := range checks {
		if !ch.Applies(c) {
			continue
		}
		out = append(out, Result{Name: ch.Name, Err: ch.Run(ctx, c)})
	}
	return out
}

// Failed returns the results that did not pass.
func Failed(results []Result) []Result {
	var out []Result
	for _, r := range results {
		if r.Err != nil {
			out = append(out, r)
		}
	}
	return out
}

// Wait runs the checks every Interval until all pass, then returns their
// results. It returns ctx's error, with the last failures, if ctx ends
// first.
func Wait(ctx context.Context, c Config, checks []Check) ([]Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	interval := c.Interval
	if interval == 0 {
		interval = 2 * time.Second
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	last := ""
	for {
		results := Once(ctx, c, checks)
		failed := Failed(results)
		if len(failed) == 0 {
			return results, nil
		}
		if s := summary(failed); s != last {
			log.Info("waiting for health checks", "failing", s)
			last = s
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return results, fmt.Errorf("node not healthy: %s: %w", last, ctx.Err())
		case <-t.C:
		}
	}
}

func summary(failed []Result) string {
	parts := make([]string, len(failed))
	for i, r := range failed {
		parts[i] = r.Name + ": " + r.Err.Error()
	}
	return strings.Join(parts, "; ")
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// checkState: StateMount is a mount whose source is the partition
// labelled StateLabel.
func checkState(ctx context.Context, c Config) error {
	want, err := filepath.EvalSymlinks(c.path("dev/disk/by-partlabel/" + c.StateLabel))
	if err != nil {
		return fmt.Errorf("no partition labelled %s (systemd-repart creates it on first boot): %w", c.StateLabel, err)
	}
	f, err := os.Open(c.path("proc/self/mountinfo"))
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 / /var rw,noatime master:1 - ext4 /dev/vda4 rw
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, fl := range fields {
			if fl == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+3 || len(fields) < 5 || fields[4] != c.StateMount {
			continue
		}
		src, err := filepath.EvalSymlinks(c.path(strings.TrimPrefix(fields[sep+2], "/")))
		if err == nil && src == want {
			return nil
		}
		return fmt.Errorf("%s is mounted from %s, not from the %s partition", c.StateMount, fields[sep+2], c.StateLabel)
	}
	return fmt.Errorf("%s is not mounted (the %s partition is %s)", c.StateMount, c.StateLabel, want)
}

type systemctl struct{}

func (systemctl) ActiveState(ctx context.Context, unit string) (string, error) {
	out, err := exec.CommandContext(ctx, "systemctl", "show", "--property=ActiveState", "--value", unit).Output()
	if err != nil {
		return "", fmt.Errorf("systemctl show %s: %w", unit, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func checkActive(ctx context.Context, c Config, unit string) error {
	units := c.Units
	if units == nil {
		units = systemctl{}
	}
	state, err := units.ActiveState(ctx, unit)
	if err != nil {
		return err
	}
	if state != "active" {
		return fmt.Errorf("%s is %s, not active (see journalctl -u %s)", unit, state, unit)
	}
	return nil
}

// checkPeer asks the peer's local API for the node's status and wants
// the node joined, or unclaimed and announcing (peerReady).
func checkPeer(ctx context.Context, c Config) error {
	sock := c.path(c.PeerSocket)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := client.New(sock).Status(ctx)
	if err != nil {
		return fmt.Errorf("peer API on %s does not answer: %w", sock, err)
	}
	return peerReady(st)
}

// peerReady is the peer part of the gate:
//   - a member: the node is alive in its own member list and, when the
//     cluster has other members, gossip works: at least one of them is
//     alive as this node sees it;
//   - unclaimed: it announces itself: it has a gossip and an API address,
//     which its discovery beacon carries (the status does not expose the
//     beacon itself);
//   - joining (waiting for an operator to approve it): healthy too, so
//     that a slow human never makes a good slot fall back.
//
// Removed, or any other phase, is not healthy.
func peerReady(st client.Status) error {
	switch st.Phase {
	case client.PhaseMember:
		if st.ClusterID == "" {
			return errors.New("peer says member but has no cluster ID")
		}
		selfAlive, others, othersAlive := false, 0, 0
		for _, m := range st.Members {
			if m.ID == st.Self.ID {
				selfAlive = m.State == client.StateAlive
				continue
			}
			others++
			if m.State == client.StateAlive {
				othersAlive++
			}
		}
		switch {
		case !selfAlive:
			return fmt.Errorf("member of cluster %s but not alive in its own member list", st.ClusterID)
		case others > 0 && othersAlive == 0:
			return fmt.Errorf("member of cluster %s but none of the %d other members is alive: no gossip (check the backplane cables)", st.ClusterID, others)
		}
		return nil
	case client.PhaseUnclaimed:
		if st.Self.Gossip == "" || st.Self.API == "" {
			return errors.New("unclaimed and not announcing: no gossip or API address yet")
		}
		return nil
	case client.PhaseJoining:
		return nil
	case "":
		return errors.New("peer reports no phase")
	}
	return fmt.Errorf("peer is %s, neither a member nor unclaimed (shoal status says more)", st.Phase)
}
