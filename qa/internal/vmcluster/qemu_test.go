package vmcluster

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got; -update rewrites it)\n%s", p, diff)
	}
}

func TestQEMUArgsGolden(t *testing.T) {
	tests := []struct {
		file string
		spec qemuSpec
	}{
		{"qemu-tcg-2disks.golden", qemuSpec{Name: "node1", Dir: "/c/nodes/node1", Accel: "tcg", MemMB: 1024,
			OVMFCode: "/usr/share/OVMF/OVMF_CODE_4M.fd", DataDisks: 2, Daemonize: true,
			Netdevs: []string{"dgram,id=n0,A", "dgram,id=n1,B"}, MACs: []string{macFor(1, 0), macFor(1, 1)}}},
		{"qemu-kvm-nodisk.golden", qemuSpec{Name: "node4", Dir: "/c/nodes/node4", Accel: "kvm", MemMB: 2048,
			OVMFCode: "/o/code.fd", Netdevs: []string{"dgram,id=n0,A", "dgram,id=n1,B"}, MACs: []string{macFor(4, 0), macFor(4, 1)}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			// One argument pair per line, so diffs read well.
			var b strings.Builder
			args := qemuArgs(tt.spec)
			for i := 0; i < len(args); i++ {
				b.WriteString(args[i])
				if strings.HasPrefix(args[i], "-") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
					b.WriteString(" " + args[i+1])
					i++
				}
				b.WriteString("\n")
			}
			golden(t, tt.file, b.String())
		})
	}
}

func TestNamesFitLinuxLimits(t *testing.T) {
	tag, err := TagFor("/tmp/some/dir")
	if err != nil {
		t.Fatal(err)
	}
	if len(tapName(tag)) > 15 {
		t.Errorf("tap name %q is longer than IFNAMSIZ-1", tapName(tag))
	}
	again, _ := TagFor("/tmp/some/../some/dir")
	if again != tag {
		t.Errorf("TagFor is not stable over equivalent paths: %q vs %q", tag, again)
	}
	other, _ := TagFor("/tmp/other")
	if other == tag {
		t.Errorf("two directories share tag %q", tag)
	}
	if got, want := macFor(12, 1), "52:54:00:5a:0c:01"; got != want {
		t.Errorf("macFor(12, 1) = %q, want %q", got, want)
	}
}

func TestValidate(t *testing.T) {
	ok := Options{Dir: "/d", Image: "/i.img", QABin: "/q"}
	tests := []struct {
		name string
		mod  func(*Options)
		want string // substring of the error, "" for valid
	}{
		{"defaults", func(*Options) {}, ""},
		{"no dir", func(o *Options) { o.Dir = "" }, "required"},
		{"no image", func(o *Options) { o.Image = "" }, "required"},
		{"too many nodes", func(o *Options) { o.Nodes = 51 }, "1 to 50"},
		{"slots below nodes", func(o *Options) { o.Nodes, o.Slots = 5, 4 }, "slots"},
		{"three disks", func(o *Options) { o.DataDisks = 3 }, "at most 2"},
		{"no disks", func(o *Options) { o.DataDisks = -1 }, ""},
		{"tiny memory", func(o *Options) { o.MemMB = 256 }, "512"},
		{"bad accel", func(o *Options) { o.Accel = "hvf" }, "tcg or kvm"},
		{"small boot disk", func(o *Options) { o.BootDiskSize = 1 << 30 }, "3 GiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate: %v, want an error with %q", err, tt.want)
			}
		})
	}
}
