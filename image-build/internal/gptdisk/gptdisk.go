// Package gptdisk assembles a GPT disk image in a plain file: sfdisk writes
// the partition table into the file (no loop device), then each partition's
// content is copied in at its offset. Unwritten space stays sparse.
package gptdisk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/shoal-hci/shoal/image-build/internal/hostcmd"
)

// GPT partition type GUIDs.
const (
	TypeESP       = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeRootX8664 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	TypeLinux     = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

const (
	sector = 512
	mib    = 1 << 20
)

// Partition is one entry of the table.
type Partition struct {
	Label   string
	Type    string
	SizeMiB int64
	Content string // file copied to the partition's start; "" leaves it empty
}

// Layout is where a partition landed.
type Layout struct {
	Label       string
	Offset, Len int64 // bytes
}

// Build writes a disk image to out: 1 MiB for the primary GPT, the
// partitions in order, 1 MiB for the backup GPT.
func Build(ctx context.Context, log *slog.Logger, out string, parts []Partition) ([]Layout, error) {
	total := int64(2 * mib)
	for _, p := range parts {
		total += p.SizeMiB * mib
		if p.Content != "" {
			st, err := os.Stat(p.Content)
			if err != nil {
				return nil, fmt.Errorf("partition %s: %w", p.Label, err)
			}
			if st.Size() > p.SizeMiB*mib {
				return nil, fmt.Errorf("partition %s: content %s is %d MiB, the partition only %d MiB", p.Label, p.Content, st.Size()/mib, p.SizeMiB)
			}
		}
	}
	os.Remove(out)
	f, err := os.OpenFile(out, os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create disk image: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(total); err != nil {
		return nil, fmt.Errorf("size disk image: %w", err)
	}

	var script strings.Builder
	script.WriteString("label: gpt\nfirst-lba: 2048\n")
	var layout []Layout
	start := int64(mib)
	for _, p := range parts {
		fmt.Fprintf(&script, "start=%d, size=%d, type=%s, name=%q\n", start/sector, p.SizeMiB*mib/sector, p.Type, p.Label)
		layout = append(layout, Layout{Label: p.Label, Offset: start, Len: p.SizeMiB * mib})
		start += p.SizeMiB * mib
	}
	if _, err := hostcmd.RunInput(ctx, log, strings.NewReader(script.String()), "sfdisk", "--no-reread", "--no-tell-kernel", "-q", out); err != nil {
		return nil, fmt.Errorf("write partition table: %w", err)
	}
	for i, p := range parts {
		if p.Content == "" {
			continue
		}
		if err := copyAt(f, p.Content, layout[i].Offset); err != nil {
			return nil, fmt.Errorf("write partition %s: %w", p.Label, err)
		}
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	return layout, nil
}

func copyAt(dst *os.File, src string, off int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	// Skip all-zero blocks: the image file is fresh (all holes), so they stay
	// sparse.
	buf := make([]byte, 1<<20)
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, werr := dst.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
		}
		off += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Read returns the partitions of a disk image as sfdisk sees them.
func Read(ctx context.Context, img string) ([]Layout, error) {
	out, err := hostcmd.Run(ctx, nil, "sfdisk", "--json", img)
	if err != nil {
		return nil, fmt.Errorf("read partition table: %w", err)
	}
	var t struct {
		PartitionTable struct {
			Partitions []struct {
				Start, Size int64
				Name        string
			}
		}
	}
	if err := json.Unmarshal(out, &t); err != nil {
		return nil, fmt.Errorf("parse sfdisk --json: %w", err)
	}
	var layout []Layout
	for _, p := range t.PartitionTable.Partitions {
		layout = append(layout, Layout{Label: p.Name, Offset: p.Start * sector, Len: p.Size * sector})
	}
	return layout, nil
}
