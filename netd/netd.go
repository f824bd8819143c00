package netd

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"

	"github.com/shoal-hci/shoal/netd/internal/backplane"
	"github.com/shoal-hci/shoal/netd/internal/netspec"
)

// Daemon is netd. Make one with New and run it with Run.
type Daemon struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns a Daemon.
func New(cfg Config) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultConfig().Interval
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Daemon{cfg: cfg, log: log}, nil
}

// loadSpec reads the spec file; a missing file is the default spec.
func loadSpec(path string) (netspec.Spec, error) {
	if path == "" {
		return netspec.Spec{}.WithDefaults(), nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return netspec.Spec{}.WithDefaults(), nil
	}
	if err != nil {
		return netspec.Spec{}, fmt.Errorf("read network spec %q: %w", path, err)
	}
	s, err := netspec.Parse(b)
	if err != nil {
		return netspec.Spec{}, fmt.Errorf("network spec %q: %w; fix the file (netd keeps the last good spec meanwhile)", path, err)
	}
	return s, nil
}

// BackplaneAddress is the backplane address (with its /64) that netd
// gives the node with this ID.
func BackplaneAddress(nodeID string) (netip.Prefix, error) { return backplane.Address(nodeID) }
