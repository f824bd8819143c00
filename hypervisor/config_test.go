package hypervisor

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.NodeID = "3f2a"
	tests := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"default with node", func(*Config) {}, true},
		{"no node", func(c *Config) { c.NodeID = "" }, false},
		{"relative dir", func(c *Config) { c.RuntimeDir = "run/vm" }, false},
		{"long dir", func(c *Config) { c.RuntimeDir = "/" + strings.Repeat("x", 62) }, false},
		{"accel xen", func(c *Config) { c.Accel = "xen" }, false},
		{"accel tcg", func(c *Config) { c.Accel = "tcg" }, true},
		{"negative grace", func(c *Config) { c.StopGrace = -time.Second }, false},
		{"negative failover wait", func(c *Config) { c.FailoverWait = -time.Second }, false},
		{"relative nbd socket", func(c *Config) { c.NBDSocket = "scribe.sock" }, false},
		{"zero waits take defaults", func(c *Config) { c.FailoverWait, c.Interval, c.PeerSocket = 0, 0, "" }, true},
		{"console without data dir", func(c *Config) { c.DataDir = "" }, false},
		{"no console service", func(c *Config) { c.DataDir, c.ConsoleListen = "", "" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate()
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrBadConfig) {
				t.Errorf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// Run with an empty runtime dir returns nil once cancelled.
func TestRunReturnsOnCancel(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeID = "3f2a"
	cfg.Accel = "tcg"
	cfg.QEMU = "sh" // any binary: Run only probes and re-attaches here
	cfg.RuntimeDir = filepath.Join(t.TempDir(), "vm")
	cfg.ConsoleListen = "" // no console service on the host's port 7950
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil on cancellation", err)
	}
}
