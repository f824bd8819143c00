// Package esp makes the EFI system partition as a FAT image file with
// mkfs.vfat and mtools: no loop device and no mount, so it works in
// containers and unprivileged. It also edits an ESP inside a disk image
// (mtools' image@@offset), which tests use to stage slots.
package esp

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/shoal-hci/shoal/image-build/internal/hostcmd"
)

// File is one file to put on the ESP.
type File struct {
	Path   string // on the ESP, slash-separated: EFI/BOOT/BOOTX64.EFI
	Source string // host file to copy, or
	Data   []byte // content when Source is empty
}

// Label is the FAT volume label of the ESP.
const Label = "SHOAL-ESP"

// Build writes a FAT32 image of sizeMiB to out holding files.
func Build(ctx context.Context, log *slog.Logger, out string, sizeMiB int, files []File) error {
	os.Remove(out)
	if _, err := hostcmd.Run(ctx, log, "mkfs.vfat", "-C", "-F", "32", "-n", Label, out, fmt.Sprint(sizeMiB*1024)); err != nil {
		return fmt.Errorf("make ESP: %w", err)
	}
	return Put(ctx, log, out, files)
}

// Put copies files into the FAT file system of img (a FAT image, or
// "disk.img@@OFFSET" for one inside a disk image), creating directories
// and replacing files that exist.
func Put(ctx context.Context, log *slog.Logger, img string, files []File) error {
	var dirs []string
	for _, f := range files {
		for d := path.Dir(f.Path); d != "." && d != "/"; d = path.Dir(d) {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(a, "/") - strings.Count(b, "/") })
	for _, d := range dirs {
		if _, err := hostcmd.Run(ctx, nil, "mdir", "-b", "-i", img, "::"+d); err == nil {
			continue // exists (mmd fails on an existing directory, even with -D s)
		}
		if _, err := hostcmd.Run(ctx, log, "mmd", "-i", img, "::"+d); err != nil {
			return fmt.Errorf("ESP mkdir %s: %w", d, err)
		}
	}
	tmp, err := os.MkdirTemp("", "shoal-esp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for i, f := range files {
		src := f.Source
		if src == "" {
			src = fmt.Sprintf("%s/%d", tmp, i)
			if err := os.WriteFile(src, f.Data, 0o644); err != nil {
				return err
			}
		}
		if _, err := hostcmd.Run(ctx, log, "mcopy", "-o", "-i", img, src, "::"+f.Path); err != nil {
			return fmt.Errorf("ESP copy %s: %w", f.Path, err)
		}
	}
	return nil
}

// List returns the names in directory dir of the FAT file system img.
func List(ctx context.Context, img, dir string) ([]string, error) {
	out, err := hostcmd.Run(ctx, nil, "mdir", "-b", "-i", img, "::"+dir)
	if err != nil {
		return nil, fmt.Errorf("ESP list %s: %w", dir, err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, path.Base(line))
		}
	}
	return names, nil
}

// Remove deletes files from the FAT file system img.
func Remove(ctx context.Context, img string, paths ...string) error {
	for _, p := range paths {
		if _, err := hostcmd.Run(ctx, nil, "mdel", "-i", img, "::"+p); err != nil {
			return fmt.Errorf("ESP delete %s: %w", p, err)
		}
	}
	return nil
}
