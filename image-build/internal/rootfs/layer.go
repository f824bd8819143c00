package rootfs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/shoal-hci/shoal/image-build/internal/hostcmd"
)

// Layer is the per-build part of the root: cheap to redo.
type Layer struct {
	Shoal     string // the shoal binary to install as /usr/bin/shoal
	UpdateKey []byte // the update bundle public key, written to /usr/share/shoal/update.pub
	OSRelease []byte // /usr/lib/os-release
	Issue     []byte // /etc/issue: the console's login banner
}

// Stage makes dst a hard-linked copy of the base tree with the layer on
// top, ready for mksquashfs. It runs the binary's `install-units` verb on
// the tree, so the binary must have it.
func Stage(ctx context.Context, log *slog.Logger, b Base, l Layer, dst string) error {
	os.RemoveAll(dst)
	if _, err := hostcmd.Run(ctx, log, "cp", "-al", b.Root, dst); err != nil {
		return fmt.Errorf("copy base: %w", err)
	}
	if err := replace(filepath.Join(dst, "usr/bin/shoal"), 0o755, func(w io.Writer) error {
		f, err := os.Open(l.Shoal)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}); err != nil {
		return fmt.Errorf("install shoal: %w", err)
	}
	for rel, data := range map[string][]byte{
		"usr/share/shoal/update.pub": l.UpdateKey,
		"usr/lib/os-release":         l.OSRelease,
		"etc/issue":                  l.Issue,
	} {
		if data == nil {
			continue
		}
		if err := replace(filepath.Join(dst, rel), 0o644, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
	}
	// The config dir exists, empty and read-only: units and daemons must
	// not need to create it on the read-only root.
	if err := os.MkdirAll(filepath.Join(dst, "etc/shoal"), 0o755); err != nil {
		return err
	}
	daemons, err := Daemons(ctx, l.Shoal)
	if err != nil {
		return err
	}
	if _, err := hostcmd.Run(ctx, log, l.Shoal, "install-units", "--root", dst, "--daemons", strings.Join(daemons, ",")); err != nil {
		return fmt.Errorf("install units (the shoal binary needs the install-units verb): %w", err)
	}
	return nil
}

// Daemons asks a shoal binary which daemon verbs it has (`help --json`).
func Daemons(ctx context.Context, shoal string) ([]string, error) {
	out, err := hostcmd.Run(ctx, nil, shoal, "help", "--json")
	if err != nil {
		return nil, fmt.Errorf("ask %s for its verbs: %w", shoal, err)
	}
	var verbs []struct {
		Name   string `json:"name"`
		Daemon bool   `json:"daemon"`
	}
	if err := json.Unmarshal(out, &verbs); err != nil {
		return nil, fmt.Errorf("parse %s help --json: %w", shoal, err)
	}
	var daemons []string
	for _, v := range verbs {
		if v.Daemon {
			daemons = append(daemons, v.Name)
		}
	}
	return daemons, nil
}

// Verbs lists every verb name of a shoal binary.
func Verbs(ctx context.Context, shoal string) ([]string, error) {
	out, err := hostcmd.Run(ctx, nil, shoal, "help", "--json")
	if err != nil {
		return nil, fmt.Errorf("ask %s for its verbs: %w", shoal, err)
	}
	var verbs []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out, &verbs); err != nil {
		return nil, fmt.Errorf("parse %s help --json: %w", shoal, err)
	}
	var names []string
	for _, v := range verbs {
		names = append(names, v.Name)
	}
	slices.Sort(names)
	return names, nil
}

// replace writes a new file at p (never through an existing hard link).
func replace(p string, mode os.FileMode, fill func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
