package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestParseSides(t *testing.T) {
	tests := []struct {
		args   []string
		a, b   string
		hasErr bool
	}{
		{[]string{"node1", "/", "node2,node3"}, "[node1]", "[node2 node3]", false},
		{[]string{"node2,node1/node3"}, "[node1 node2]", "[node3]", false},
		{[]string{"node1,", "/", ",node2"}, "[node1]", "[node2]", false},
		{[]string{"node1", "node2"}, "", "", true},
		{[]string{"/", "node2"}, "", "", true},
		{nil, "", "", true},
	}
	for _, tt := range tests {
		a, b, err := parseSides(tt.args)
		if (err != nil) != tt.hasErr {
			t.Errorf("parseSides(%q) error %v, want error %v", tt.args, err, tt.hasErr)
			continue
		}
		if err == nil && (fmt.Sprint(a) != tt.a || fmt.Sprint(b) != tt.b) {
			t.Errorf("parseSides(%q) = %v / %v, want %s / %s", tt.args, a, b, tt.a, tt.b)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"8G", 8 << 30}, {"512M", 512 << 20}, {"4096", 4096}, {"1T", 1 << 40}, {"64K", 64 << 10},
		{"", 0}, {"G", 0}, {"-1G", 0}, {"1.5G", 0}, {"8g", 0},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"kill"}, {"partition", "node1"}, {"up", "extra"}, {"exec", "node1"}, {"disk-fail", "node1"}, {"bench", "scribe", "--repeat", "0"}} {
		if code := run(args); code != 2 {
			t.Errorf("shoal-qa %q exited %d, want 2 (usage)", args, code)
		}
	}
}

func TestHelpPrintsUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"up", "-h"}, "Usage: shoal-qa [--dir D] VERB"},
		{[]string{"down", "--help"}, "Usage: shoal-qa [--dir D] VERB"},
		{[]string{"vm", "up", "-h"}, "shoal-qa vm:"},
		{[]string{"bench", "scribe", "-h"}, "4k write+flush QD1"},
	}
	for _, tt := range tests {
		err := dispatch(context.Background(), tt.args[0], t.TempDir(), tt.args[1:])
		var help helpRequested
		if !errors.As(err, &help) || !strings.Contains(string(help), tt.want) {
			t.Errorf("shoal-qa %q: %v, want help text containing %q", tt.args, err, tt.want)
		}
		if code := run(append([]string{"--dir", t.TempDir()}, tt.args...)); code != 0 {
			t.Errorf("shoal-qa %q exited %d, want 0", tt.args, code)
		}
	}
}
