package proccluster

import (
	"os"
	"testing"
	"time"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		ok   bool
	}{
		{"zero", Options{}, true},
		{"defaults", DefaultOptions(), true},
		{"no disks", Options{Disks: -1}, true},
		{"too many nodes", Options{Nodes: MaxNodes + 1}, false},
		{"negative nodes", Options{Nodes: -1}, false},
		{"too many disks", Options{Disks: 17}, false},
		{"negative size", Options{DiskSize: -1}, false},
		{"negative timeout", Options{ReadyTimeout: -time.Second}, false},
		{"file disks", Options{DiskMode: DiskModeFile}, true},
		{"loop disks", Options{DiskMode: DiskModeLoop}, true},
		{"unknown disk mode", Options{DiskMode: "nfs"}, false},
		{"daemon env", Options{DaemonEnv: []string{"GOMAXPROCS=2", "GODEBUG="}}, true},
		{"daemon env without =", Options{DaemonEnv: []string{"GOMAXPROCS"}}, false},
		{"daemon env without key", Options{DaemonEnv: []string{"=2"}}, false},
	}
	for _, tt := range tests {
		if err := tt.o.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	if o := (Options{Disks: -1}).withDefaults(); o.Disks != 0 || o.Nodes != 3 || o.DiskSize != 8<<30 || o.DiskMode != DiskModeFUSE {
		t.Errorf("withDefaults: %+v", o)
	}
}

func TestTagFor(t *testing.T) {
	a, _ := TagFor("/tmp/shoal-qa")
	b, _ := TagFor("/tmp/shoal-qa/")
	c, _ := TagFor("/tmp/other")
	if a != b || a == c || len(a) != 6 {
		t.Errorf("TagFor: %q %q %q; want equal for the same dir, 6 hex digits, different otherwise", a, b, c)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", "/plain": "/plain", `/t\011x\134`: "/t\tx\\"} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestProcRecord(t *testing.T) {
	st, start, err := procStat(os.Getpid())
	if err != nil || st == 'Z' || start == 0 {
		t.Fatalf("procStat(self) = %c %d %v", st, start, err)
	}
	self := procRecord{Pid: os.Getpid(), Start: start}
	if !self.alive() || self.state() != "running" {
		t.Errorf("this process: alive %v state %s", self.alive(), self.state())
	}
	reused := procRecord{Pid: os.Getpid(), Start: start + 1}
	if reused.alive() {
		t.Error("a record with another start time counts as alive (pid reuse)")
	}
}

func TestParseDiskMode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want DiskMode
		ok   bool
	}{
		{"fuse", DiskModeFUSE, true},
		{"file", DiskModeFile, true},
		{"loop", DiskModeLoop, true},
		{"", "", false},
		{"FUSE", "", false},
	} {
		got, err := ParseDiskMode(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseDiskMode(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestIsDiskImage(t *testing.T) {
	for _, tt := range []struct {
		path string
		want bool
	}{
		{"/tmp/c/nodes/node1/disks/disk1.img", true},
		{"/tmp/c/nodes/node12/disks/disk16.img", true},
		{"/tmp/c/nodes/node1/disks/other.img", false},
		{"/tmp/c/nodes/node1/lib/disks/disk1.img", false},
		{"/tmp/other/nodes/node1/disks/disk1.img", false},
		{"/tmp/c2/nodes/node1/disks/disk1.img", false},
		{"nodes/node1/disks/disk1.img", false},
	} {
		if got := isDiskImage("/tmp/c", tt.path); got != tt.want {
			t.Errorf("isDiskImage(/tmp/c, %q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}
