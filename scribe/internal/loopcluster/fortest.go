package loopcluster

import (
	"context"
	"testing"
)

// ForTest starts a Cluster in a temporary directory of t (cfg.Dir is
// ignored); cleanup runs Check on every store, then closes it.
func ForTest(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	cfg.Dir = t.TempDir()
	c, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Check(context.Background()); err != nil {
			t.Errorf("chunk store check: %v", err)
		}
		c.Close()
	})
	return c
}
