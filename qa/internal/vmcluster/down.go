package vmcluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/shoal-hci/shoal/qa/internal/netns"
)

// Down removes everything of the cluster in dir, whether or not its state
// file is readable: every process tagged with its tag (QEMU, the switch
// daemon, dnsmasq), its network namespace, disks, image copy, sockets and
// state. Logs stay: dir/nodes/*/console.log, qemu.log, dir/*.log.
func Down(ctx context.Context, dir string, log *slog.Logger) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	tag, err := TagFor(dir)
	if err != nil {
		return err
	}
	if err := down(ctx, tag, log); err != nil {
		return err
	}
	var errs []error
	for _, pat := range []string{"state.json", "state.json.tmp", "image.img", "control.sock", "api-target", "dnsmasq.leases", "sw",
		"nodes/*/*.qcow2", "nodes/*/*.sock", "nodes/*/" + fVars, "nodes/*/" + fPid} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, p := range m {
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove the cluster's files: %v", errs)
	}
	return nil
}

// DownAll is Down for every image-level cluster on the machine, found by
// their processes' environment and their namespaces' prefix; files stay.
func DownAll(ctx context.Context, log *slog.Logger) error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	return down(ctx, "", log)
}

func down(ctx context.Context, tag string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The switch daemon first (SIGTERM: it stops dnsmasq and removes its
	// namespace), then everything else.
	pids := tagged(tag)
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && len(alive(pids)) > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range alive(pids) {
		log.Info("killing a process that did not stop", "pid", p)
		syscall.Kill(p, syscall.SIGKILL)
	}
	for range 60 {
		if len(alive(pids)) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	prefix := netnsPrefix
	if tag != "" {
		prefix += tag + "-"
	}
	names, err := netns.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := netns.Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// tagged lists processes whose environment has EnvTag=tag (any tag when
// tag is empty), not counting this one.
func tagged(tag string) []int {
	ents, _ := os.ReadDir("/proc")
	want := []byte(EnvTag + "=" + tag)
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if (tag == "" && bytes.HasPrefix(kv, want)) || bytes.Equal(kv, want) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// alive are the pids in pids that still run (zombies count as gone).
func alive(pids []int) []int {
	var out []int
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			continue
		}
		out = append(out, p)
	}
	return out
}
