package vmcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Built is an image BuildImage made.
type Built struct {
	Image   string        // the disk image
	Took    time.Duration // shoal-image build, binaries excluded
	Summary string        // what shoal-image printed: sizes, times
}

// BuildImage builds the appliance image the way `make image` does: the
// shoal binary static with the Makefile's flags and version, then
// `shoal-image build` with its default cache (/var/cache/shoal-image, or
// $SHOAL_IMAGE_CACHE), so a test on a fresh machine pays the cold base
// build once and every later build, here or by make, is warm. outDir gets
// bin/ and the image. Needs root and the tools docs/image.md lists.
func BuildImage(ctx context.Context, outDir string) (Built, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return Built{}, fmt.Errorf("find the module (go env GOMOD): %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	version := "0.0.0-dev"
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "describe", "--tags", "--dirty").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	commit := "unknown"
	if out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	const bi = "github.com/shoal-hci/shoal/appliance/internal/buildinfo"
	ldflags := fmt.Sprintf("-s -w -X %s.Version=%s -X %s.Commit=%s", bi, version, bi, commit)
	bin := filepath.Join(outDir, "bin")
	for _, b := range []struct{ pkg, out string }{
		{"./appliance/cmd/shoal", "shoal"}, {"./image-build/cmd/shoal-image", "shoal-image"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(bin, b.out), b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return Built{}, fmt.Errorf("go build %s: %w\n%s", b.pkg, err, out)
		}
	}
	args := []string{"build", "--shoal", filepath.Join(bin, "shoal"), "--out", outDir, "--version", version}
	if cache := os.Getenv("SHOAL_IMAGE_CACHE"); cache != "" {
		args = append(args, "--cache", cache)
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "shoal-image"), args...).CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return Built{}, fmt.Errorf("shoal-image build: %w\n%s", err, out)
	}
	imgs, _ := filepath.Glob(filepath.Join(outDir, "shoal-*.img"))
	if len(imgs) != 1 {
		return Built{}, fmt.Errorf("shoal-image build left %d images in %s, want 1", len(imgs), outDir)
	}
	summary := string(out)
	if i := strings.Index(summary, "\nimage "); i >= 0 {
		summary = summary[i+1:]
	}
	return Built{Image: imgs[0], Took: took, Summary: strings.TrimSpace(summary)}, nil
}
