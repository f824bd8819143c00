//go:build qa

package qa_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/qa"
)

// imageView is one element of `shoal image ls --json`.
type imageView struct {
	Name     string   `json:"name"`
	Format   string   `json:"format"`
	Complete bool     `json:"complete"`
	UsedBy   []string `json:"used_by"`
}

func imageLs(c *qa.Cluster, node string) ([]imageView, error) {
	out, err := c.Shoal(node, "image", "ls", "--json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var imgs []imageView
	if err := json.Unmarshal([]byte(out), &imgs); err != nil {
		return nil, fmt.Errorf("image ls --json: %w: %q", err, out)
	}
	return imgs, nil
}

// TestFastVMConsoleAndImage: `shoal image upload` of a small raw image
// on one node (read back equal with qemu-img compare); a VM booting the
// test guest with a new disk (`--disk 64M`) and the image as its CD-ROM
// (`--iso`), both reaching QEMU through the local scribe socket; its
// serial console read from ANOTHER node (`shoal vm console`, piped,
// through the console service on port 7950) shows the guest's output;
// a second console is refused as in use; the image cannot be removed
// while the VM uses it; `vm rm` removes the VM's disk, then the image
// goes.
func TestFastVMConsoleAndImage(t *testing.T) {
	g := vmScenarioPrereqs(t)
	c := qa.NewCluster(t, qa.Options{Nodes: 3, Disks: 1, DiskSize: 1 << 30})
	nodes := c.Nodes()
	c.WaitFor("one cluster", 60*time.Second, c.OneCluster(nodes...))
	byID := nodeByID(t, c)
	c.WaitFor("every scribe published its disk", time.Minute, func() (bool, string) {
		out, err := c.Shoal(nodes[0], "state", "ls", "scribe/")
		n := strings.Count(out, `"id"`)
		return err == nil && n == 3, fmt.Sprintf("%d disks published: %s", n, out)
	})

	// A raw image: 3 MiB and a bit, data in a few places, zeros elsewhere.
	img := make([]byte, 3<<20+5000)
	copy(img, "shoal test image\n")
	for i := 1 << 20; i < 1<<20+70000; i++ {
		img[i] = byte(i%251 + 1)
	}
	copy(img[len(img)-10:], "last bytes")
	imgPath := filepath.Join(t.TempDir(), "test.img")
	if err := os.WriteFile(imgPath, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := c.Shoal(nodes[0], "image", "upload", imgPath, "--name", "testimg")
	if err != nil {
		t.Fatalf("image upload: %v: %s", err, out)
	}
	t.Logf("%s", strings.TrimSpace(out))
	c.WaitFor("node2 lists testimg as complete", 30*time.Second, func() (bool, string) {
		imgs, err := imageLs(c, nodes[1])
		if err != nil {
			return false, err.Error()
		}
		return len(imgs) == 1 && imgs[0].Name == "testimg" && imgs[0].Complete && imgs[0].Format == "raw", fmt.Sprintf("%+v", imgs)
	})
	if _, err := exec.LookPath("qemu-img"); err == nil {
		out, err := c.Exec(nodes[0], "qemu-img", "compare", "-f", "raw", "-F", "raw", imgPath, "nbd+unix:///testimg?socket=/run/shoal/scribe.sock")
		if err != nil {
			t.Fatalf("the uploaded image differs from the file: %v: %s", err, out)
		}
	}

	out, err = c.Shoal(nodes[0], "vm", "create", "web1", "--cpus", "1", "--memory", "128M", "--net", "none",
		"--disk", "64M", "--iso", "testimg", "--kernel", g.Kernel, "--initrd", g.Initrd, "--append", g.Append)
	if err != nil {
		t.Fatalf("vm create: %v: %s", err, out)
	}
	v, err := vmInfo(c, nodes[0], "web1")
	if err != nil {
		t.Fatal(err)
	}
	id := v.ID
	t.Cleanup(func() {
		for _, pid := range qemuPIDs(id) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	c.WaitFor("vm web1 running", 120*time.Second, func() (bool, string) {
		if v, err = vmInfo(c, nodes[1], "web1"); err != nil {
			return false, err.Error()
		}
		return v.Status == "running" && byID[v.Node] != "", fmt.Sprintf("%+v", v)
	})
	host := byID[v.Node]
	t.Logf("vm web1 runs on %s", host)

	// The disk and the CD-ROM reach QEMU over the local scribe socket,
	// and scribe on that node has the disk open.
	pids := qemuPIDs(id)
	if len(pids) != 1 {
		t.Fatalf("%d QEMU processes for web1, want 1", len(pids))
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pids[0]))
	for _, want := range []string{
		"driver=nbd,node-name=disk0,server.type=unix,server.path=/run/shoal/scribe.sock,export=web1-disk0,",
		"driver=nbd,node-name=cd0,server.type=unix,server.path=/run/shoal/scribe.sock,export=testimg,cache.direct=on,read-only=on",
		"ide-cd,drive=cd0",
	} {
		if !strings.Contains(string(cmdline), want) {
			t.Errorf("QEMU's command line lacks %q:\n%s", want, strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	c.WaitFor("web1-disk0 open on the VM's node", 30*time.Second, func() (bool, string) {
		v, err := vsdInfo(c, nodes[0], "web1-disk0")
		return err == nil && byID[v.Owner] == host, fmt.Sprintf("%+v %v", v, err)
	})

	// The console from another node: the guest's boot output (the
	// console log's history, then live).
	other := otherNode(nodes, host)
	start := time.Now()
	out, err = c.Shoal(other, "vm", "console", "web1", "--history", "262144", "--until", "shoal test guest up", "--timeout", "150s")
	if err != nil {
		t.Fatalf("vm console on %s: %v: %s", other, err, out)
	}
	t.Logf("console read from %s in %v; its last line: %q", other, time.Since(start).Round(10*time.Millisecond), lastLine(out))

	// One console at a time: hold one on the VM's node, ask from another.
	holder, err := c.Exec(host, "sh", "-c", "shoal vm console web1 --timeout 60s </dev/null >/dev/null 2>&1 & echo $!")
	if err != nil {
		t.Fatalf("start a console holder on %s: %v: %s", host, err, holder)
	}
	holder = strings.TrimSpace(holder)
	t.Cleanup(func() { c.Exec(host, "kill", holder) })
	c.WaitFor("a second console is refused as in use", 30*time.Second, func() (bool, string) {
		out, err := c.Shoal(other, "vm", "console", "web1", "--until", "never printed", "--timeout", "3s")
		return err != nil && strings.Contains(out, "("+v.Node+") is in use by `shoal vm console` (pid "), out
	})
	c.Exec(host, "kill", holder)

	if out, err := c.Shoal(other, "image", "rm", "testimg"); err == nil || !strings.Contains(out, "used by vm web1") {
		t.Errorf("image rm while web1 uses it: %v: %s; want it refused", err, out)
	}
	if out, err := c.Shoal(other, "vm", "rm", "web1", "--force"); err != nil || !strings.Contains(out, "removed disk web1-disk0") {
		t.Fatalf("vm rm --force: %v: %s", err, out)
	}
	if out, err := c.Shoal(other, "image", "rm", "testimg"); err != nil {
		t.Errorf("image rm after the vm went: %v: %s", err, out)
	}
	out, _ = c.Shoal(nodes[0], "vsd", "ls")
	if strings.Contains(out, "web1-disk0") || strings.Contains(out, "testimg") {
		t.Errorf("VSDs left after vm rm and image rm:\n%s", out)
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\r\n")
	if i := strings.LastIndexAny(s, "\r\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}
