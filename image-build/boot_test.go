package imagebuild_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	imagebuild "github.com/shoal-hci/shoal/image-build"
	"github.com/shoal-hci/shoal/image-build/bundle"
	"github.com/shoal-hci/shoal/image-build/internal/esp"
	"github.com/shoal-hci/shoal/image-build/internal/gptdisk"
	"github.com/shoal-hci/shoal/image-build/internal/uki"
)

// The privileged image test: build the image (cold or from the cache,
// then warm with a new binary), boot one copy in QEMU with OVMF (TCG),
// check that it reaches boot-complete, made its state partition and
// blessed its slot; then stage a broken newer slot B and check that
// systemd-boot falls back to slot A by itself. It prints build times, boot
// times and sizes.
//
// It skips without root, QEMU, OVMF or the host tools, and with
// SHOAL_SKIP_IMAGE=1. SHOAL_IMAGE_CACHE overrides the cache directory
// (default /var/cache/shoal-image, shared with shoal-image build).

const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

func skipUnlessBootable(t *testing.T) {
	t.Helper()
	if os.Getenv("SHOAL_SKIP_IMAGE") == "1" {
		t.Skip("SHOAL_SKIP_IMAGE=1")
	}
	if os.Geteuid() != 0 {
		t.Skip("building the image needs root (debootstrap, chroot); run as root")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (Debian qemu-system-x86 / qemu-utils)", tool)
		}
	}
	for _, f := range []string{ovmfCode, ovmfVars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("OVMF firmware %s not found (Debian ovmf)", f)
		}
	}
	for tool, pkg := range imagebuild.HostTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (Debian %s)", tool, pkg)
		}
	}
}

// buildShoal builds a shoal binary with the verbs the image needs. Until
// appliance/cmd/shoal/main.go lists install-units and health, and to keep
// this test about the image rather than the daemons, it swaps main.go for
// a minimal table through go build -overlay.
func buildShoal(t *testing.T, dir, version string) string {
	t.Helper()
	if p := os.Getenv("SHOAL_IMAGE_SHOAL"); p != "" {
		return p
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "main.go")
	if err := os.WriteFile(main, []byte(`package main

import (
	"os"

	"github.com/shoal-hci/shoal/appliance"
	"github.com/shoal-hci/shoal/appliance/internal/verb"
)

var verbs = []verb.Verb{
	{Name: "version", Summary: "print the version", Run: appliance.Version},
	{Name: "install-units", Summary: "install the units", Run: appliance.InstallUnits},
	{Name: "health", Summary: "run the health gate", Run: appliance.Health},
}

func main() { os.Exit(verb.Main(verbs)) }
`), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{filepath.Join(root, "appliance/cmd/shoal/main.go"): main}})
	ovPath := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ovPath, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "shoal-"+version)
	cmd := exec.Command("go", "build", "-overlay", ovPath, "-trimpath",
		"-ldflags", "-s -w -X github.com/shoal-hci/shoal/appliance/internal/buildinfo.Version="+version,
		"-o", out, "./appliance/cmd/shoal")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build shoal: %v\n%s", err, b)
	}
	return out
}

func TestImageBootsBlessesAndFallsBack(t *testing.T) {
	skipUnlessBootable(t)
	cache := os.Getenv("SHOAL_IMAGE_CACHE")
	if cache == "" {
		cache = imagebuild.DefaultConfig().CacheDir
	}
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))

	cfg := imagebuild.DefaultConfig()
	cfg.CacheDir = cache
	cfg.OutDir = filepath.Join(dir, "out")
	cfg.Log = log
	cfg.MenuTimeout = 0
	pub, _, err := bundle.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.UpdateKey = pub

	if dl, ok := t.Deadline(); ok && time.Until(dl) < 25*time.Minute {
		if _, err := os.Stat(cache); err != nil {
			t.Skipf("a cold image build and three TCG boots need ~15 minutes; run with -timeout 30m (%v left)", time.Until(dl).Round(time.Second))
		}
		if time.Until(dl) < 12*time.Minute {
			t.Skipf("three TCG boots need ~10 minutes; run with -timeout 30m (%v left)", time.Until(dl).Round(time.Second))
		}
	}

	// Build: the first build is cold when the cache is empty; the second
	// differs only in the shoal binary.
	var results []imagebuild.Result
	for _, v := range []string{"0.9.0-test", "1.0.0-test"} {
		cfg.Version = v
		cfg.Shoal = buildShoal(t, dir, v)
		b, err := imagebuild.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		res, err := b.Build(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	res := results[1]
	kind := "warm (base from cache)"
	if results[0].BaseBuilt {
		kind = "cold (base built)"
	}
	t.Logf("build 1, %s: %v; build 2, new shoal binary only: %v", kind, results[0].Total.Round(100*time.Millisecond), res.Total.Round(100*time.Millisecond))
	t.Logf("sizes: root squashfs (OS slot) %.1f MiB in a %d MiB slot; UKI %.1f MiB; image %.0f MiB (%.0f MiB allocated)",
		mib(res.SquashfsBytes), cfg.SlotMiB, mib(res.UKIBytes), mib(res.ImageBytes), mib(res.ImageAllocated))
	for _, p := range res.Contents {
		t.Logf("  root: %-28s %7.1f MiB", p.Name, mib(p.Bytes))
	}

	// Boot 1: first boot of a fresh copy.
	vars := filepath.Join(dir, "vars.fd")
	copyFile(t, ovmfVars, vars)
	overlay1 := filepath.Join(dir, "boot1.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", res.Image, "-F", "raw", overlay1, "6G")
	// A data disk beside the boot disk: scribe's, never touched by the image.
	data := filepath.Join(dir, "data.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", data, "256M")
	vm := startVM(t, dir, "boot1", overlay1, vars, data)
	_, blessAt := vm.waitFor(t, regexp.MustCompile(`Finished .*Boot Loader Entry as Good`), 0, 10*time.Minute)
	_, healthAt := vm.waitFor(t, regexp.MustCompile(`shoal health: ok`), 0, time.Minute)
	t.Logf("boot 1: health gate passed %v and slot blessed %v after QEMU started", healthAt.Round(time.Second), blessAt.Round(time.Second))
	if !strings.Contains(vm.serial(t), "shoal health: state partition: ok") {
		t.Errorf("the health gate did not check the state partition")
	}
	vm.powerdown(t)

	disk := filepath.Join(dir, "disk.raw")
	run(t, "qemu-img", "convert", "-O", "raw", overlay1, disk)
	parts, err := gptdisk.Read(context.Background(), disk)
	if err != nil {
		t.Fatal(err)
	}
	byLabel := map[string]gptdisk.Layout{}
	for _, p := range parts {
		byLabel[p.Label] = p
	}
	state, ok := byLabel[imagebuild.LabelState]
	if !ok {
		t.Fatalf("no %s partition after first boot: %+v", imagebuild.LabelState, parts)
	}
	dataRaw := filepath.Join(dir, "data.raw")
	run(t, "qemu-img", "convert", "-O", "raw", data, dataRaw)
	if b, err := os.ReadFile(dataRaw); err != nil || len(bytes.Trim(b, "\x00")) != 0 {
		t.Errorf("the data disk was written to during boot (err %v)", err)
	}
	t.Logf("state partition: %.0f MiB at offset %d MiB (the rest of the 6 GiB disk)", mib(state.Len), state.Offset>>20)
	espImg := fmt.Sprintf("%s@@%d", disk, byLabel[imagebuild.LabelESP].Offset)
	entries := listESP(t, espImg)
	want := "shoal-1.0.0-test.efi"
	if !contains(entries, want) || contains(entries, res.ESPName) {
		t.Fatalf("ESP EFI/Linux after boot 1 = %v; want %s (blessed), not %s", entries, want, res.ESPName)
	}

	// Boot 2: a broken slot B (newer version, so systemd-boot prefers it;
	// wrong rootfstype, so it panics and reboots) with one try left.
	slotB := byLabel[imagebuild.LabelRootB]
	writeAt(t, disk, res.RootSquashfs, slotB.Offset)
	broken := filepath.Join(dir, "broken.efi")
	baseDir := findBase(t, cache)
	if err := uki.Build(context.Background(), log, uki.Spec{
		Stub:    filepath.Join(baseDir, "root/usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
		Kernel:  filepath.Join(baseDir, "vmlinuz"),
		Initrd:  filepath.Join(baseDir, "initrd.img"),
		OSRel:   imagebuild.OSRelease("2.0.0-broken", "b"),
		Cmdline: "root=PARTLABEL=" + imagebuild.LabelRootB + " ro rootfstype=ext4 console=ttyS0,115200 panic=1",
	}, broken); err != nil {
		t.Fatal(err)
	}
	brokenName := imagebuild.UKIName("2.0.0-broken", 1)
	if err := esp.Put(context.Background(), log, espImg, []esp.File{{Path: "EFI/Linux/" + brokenName, Source: broken}}); err != nil {
		t.Fatal(err)
	}
	overlay2 := filepath.Join(dir, "boot2.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", disk, "-F", "raw", overlay2)
	vm = startVM(t, dir, "boot2", overlay2, vars)
	brokenAt, brokenT := vm.waitFor(t, regexp.MustCompile(`Command line: root=PARTLABEL=shoal-root-b .*rootfstype=ext4`), 0, 5*time.Minute)
	goodAt, goodT := vm.waitFor(t, regexp.MustCompile(`Command line: root=PARTLABEL=shoal-root-a `), brokenAt, 5*time.Minute)
	_, healthT := vm.waitFor(t, regexp.MustCompile(`shoal health: ok`), goodAt, 10*time.Minute)
	t.Logf("boot 2: broken slot B tried at %v, fell back to slot A at %v, healthy at %v", brokenT.Round(time.Second), goodT.Round(time.Second), healthT.Round(time.Second))
	vm.powerdown(t)
	disk2 := filepath.Join(dir, "disk2.raw")
	run(t, "qemu-img", "convert", "-O", "raw", overlay2, disk2)
	entries = listESP(t, fmt.Sprintf("%s@@%d", disk2, byLabel[imagebuild.LabelESP].Offset))
	for _, want := range []string{"shoal-1.0.0-test.efi", "shoal-2.0.0-broken+0-1.efi"} {
		if !contains(entries, want) {
			t.Errorf("ESP EFI/Linux after fallback = %v; want %s", entries, want)
		}
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, b)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, disk, src string, off int64) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func listESP(t *testing.T, img string) []string {
	t.Helper()
	names, err := esp.List(context.Background(), img, "EFI/Linux")
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func findBase(t *testing.T, cache string) string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(cache, "base-*", "done"))
	if len(matches) == 0 {
		t.Fatalf("no base in %s", cache)
	}
	return filepath.Dir(matches[0])
}

// vm is one QEMU guest with its serial console in a file and a QMP socket.
type vm struct {
	name, log, qmp string
	start          time.Time
	done           chan error
	cmd            *exec.Cmd
}

func startVM(t *testing.T, dir, name, disk, vars string, dataDisks ...string) *vm {
	t.Helper()
	v := &vm{name: name, log: filepath.Join(dir, name+".serial"), qmp: filepath.Join(dir, name+".qmp"), done: make(chan error, 1)}
	args := []string{
		"-machine", "q35", "-accel", "tcg", "-m", "1024", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + ovmfCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-drive", "if=virtio,format=qcow2,file=" + disk,
		"-serial", "file:" + v.log,
		"-qmp", "unix:" + v.qmp + ",server=on,wait=off",
	}
	for _, d := range dataDisks {
		args = append(args, "-drive", "if=virtio,format=qcow2,file="+d)
	}
	v.cmd = exec.Command("qemu-system-x86_64", args...)
	out, err := os.Create(filepath.Join(dir, name+".qemu.log"))
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Stdout, v.cmd.Stderr = out, out
	v.start = time.Now()
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { v.done <- v.cmd.Wait(); out.Close() }()
	t.Cleanup(func() {
		if v.cmd.ProcessState == nil {
			v.cmd.Process.Kill()
			<-v.done
		}
		if t.Failed() {
			t.Logf("%s serial console (tail):\n%s", name, tail(v.serialOrEmpty(), 6000))
		}
	})
	return v
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

func (v *vm) serialOrEmpty() string {
	b, _ := os.ReadFile(v.log)
	return ansi.ReplaceAllString(string(b), "")
}

func (v *vm) serial(t *testing.T) string { return v.serialOrEmpty() }

// waitFor waits until re matches the serial console after offset from,
// and returns the end offset of the match and the time since QEMU started.
func (v *vm) waitFor(t *testing.T, re *regexp.Regexp, from int, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s := v.serialOrEmpty()
		if from <= len(s) {
			if loc := re.FindStringIndex(s[from:]); loc != nil {
				return from + loc[1], time.Since(v.start)
			}
		}
		select {
		case err := <-v.done:
			v.done <- err
			t.Fatalf("%s: QEMU exited (%v) before the console showed %q", v.name, err, re)
		case <-deadline.C:
			t.Fatalf("%s: the console did not show %q within %v", v.name, re, timeout)
		case <-tick.C:
		}
	}
}

// powerdown presses the ACPI power button (again every 15 s: a press
// before logind listens is lost) and waits for QEMU to exit.
func (v *vm) powerdown(t *testing.T) {
	t.Helper()
	conn, err := net.Dial("unix", v.qmp)
	if err != nil {
		t.Fatalf("QMP: %v", err)
	}
	defer conn.Close()
	go io.Copy(io.Discard, conn) // greeting, replies and events
	fmt.Fprintln(conn, `{"execute":"qmp_capabilities"}`)
	press := time.NewTicker(15 * time.Second)
	defer press.Stop()
	deadline := time.NewTimer(3 * time.Minute)
	defer deadline.Stop()
	for {
		fmt.Fprintln(conn, `{"execute":"system_powerdown"}`)
		select {
		case err := <-v.done:
			v.done <- err
			return
		case <-deadline.C:
			t.Fatalf("%s did not power off within 3 minutes", v.name)
		case <-press.C:
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
