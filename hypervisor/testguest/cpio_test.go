package testguest

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// readCPIO parses a newc archive back, for the test.
func readCPIO(t *testing.T, b []byte) map[string]cpioEntry {
	t.Helper()
	out := map[string]cpioEntry{}
	for len(b) > 0 {
		if len(b) < 110 || string(b[:6]) != "070701" {
			t.Fatalf("bad header at %q", b[:min(len(b), 20)])
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return int(v)
		}
		mode, size, nameLen := field(1), field(6), field(11)
		name := string(b[110 : 110+nameLen-1])
		off := 110 + nameLen
		off += pad4(off)
		data := b[off : off+size]
		off += size + pad4(size)
		b = b[off:]
		if name == "TRAILER!!!" {
			break
		}
		out[name] = cpioEntry{Mode: uint32(mode), Data: append([]byte(nil), data...)}
	}
	return out
}

func TestCPIORoundTrip(t *testing.T) {
	in := map[string]cpioEntry{
		"bin":         {Mode: 0o040755},
		"bin/busybox": {Mode: 0o100755, Data: []byte("ELF...")},
		"bin/sh":      {Mode: 0o120777, Data: []byte("busybox")},
		"init":        {Mode: 0o100755, Data: []byte("#!/bin/sh\n")},
		"etc/x":       {Mode: 0o100644, Data: []byte("abc")},
	}
	var buf bytes.Buffer
	if err := writeCPIO(&buf, in); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not a multiple of 4", buf.Len())
	}
	got := readCPIO(t, buf.Bytes())
	if diff := cmp.Diff(in, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if !strings.Contains(buf.String(), "TRAILER!!!") {
		t.Error("no trailer")
	}
}

// TestModuleOrderDebianKernel resolves the bond test's modules in the
// cached Debian kernel (skips when the cache is empty).
func TestModuleOrderDebianKernel(t *testing.T) {
	if m, _ := filepath.Glob(filepath.Join(DefaultCacheDir(), "debs", "linux-image-*.deb")); len(m) == 0 {
		t.Skipf("no Debian kernel in %s (the qa bond scenario fetches one; this unit test does not download 70 MB)", DefaultCacheDir())
	}
	k, err := FetchKernel(t.Context(), DefaultCacheDir())
	if err != nil {
		t.Skipf("no Debian kernel in the cache and cannot download one: %v", err)
	}
	order, err := ModuleOrder(k.Modules, []string{"virtio_pci", "virtio_net", "virtio_console", "bonding"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, p := range order {
		name := p[strings.LastIndex(p, "/")+1:]
		pos[strings.TrimSuffix(name, ".ko")] = i
	}
	for _, dep := range [][2]string{{"virtio", "virtio_pci"}, {"failover", "net_failover"}, {"net_failover", "virtio_net"}, {"virtio_ring", "virtio_console"}} {
		a, okA := pos[dep[0]]
		b, okB := pos[dep[1]]
		if !okA || !okB || a > b {
			t.Errorf("%s must load before %s: order %v", dep[0], dep[1], order)
		}
	}
}
