package scribe

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		bad  string // "" when valid
	}{
		{"zero value", Config{}, ""},
		{"defaults", DefaultConfig(), ""},
		{"negative interval", Config{Interval: -1}, "negative"},
		{"listen without port", Config{ChunkListen: "0.0.0.0"}, "chunk listen"},
		{"advertise without port", Config{Advertise: "fd53::1"}, "advertise"},
		{"long socket", Config{NBDSocket: "/" + strings.Repeat("x", 120)}, "longer than 107"},
		{"bad glob", Config{DiskGlobs: []string{"/dev/sd["}}, "disk pattern"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != (tt.bad == "") || (err != nil && !strings.Contains(err.Error(), tt.bad)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.bad)
		}
		if tt.bad != "" {
			if _, err := New(tt.cfg); err == nil {
				t.Errorf("%s: New accepted a config Validate refuses", tt.name)
			}
		}
	}
	if c := (Config{}).withDefaults(); c.NBDSocket != DefaultNBDSocket || c.ChunkListen != DefaultChunkListen || c.Interval <= 0 {
		t.Errorf("zero value defaults: %+v", c)
	}
}
