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
	}
	for _, tt := range tests {
		if err := tt.o.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	if o := (Options{Disks: -1}).withDefaults(); o.Disks != 0 || o.Nodes != 3 || o.DiskSize != 8<<30 {
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
