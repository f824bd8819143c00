package main

import "testing"

func TestVMUsage(t *testing.T) {
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"vm", "help"}, 0},
		{[]string{"vm", "bogus"}, 2},
		{[]string{"vm", "kill"}, 2},
		{[]string{"vm", "up", "extra"}, 2},
		{[]string{"vm", "up", "--disk-size", "lots"}, 2},
		{[]string{"vm", "exec", "node1"}, 2},
		{[]string{"vm", "exec", "node1", "--"}, 2},
		{[]string{"vm", "cut", "node1", "first"}, 2},
		{[]string{"vm", "drop", "node1", "maybe"}, 2},
		{[]string{"vm", "delay", "node1", "soon"}, 2},
		{[]string{"vm", "partition", "node1"}, 2},
	}
	for _, tt := range tests {
		if code := run(append([]string{"--dir", t.TempDir()}, tt.args...)); code != tt.want {
			t.Errorf("shoal-qa %q exited %d, want %d", tt.args, code, tt.want)
		}
	}
}
