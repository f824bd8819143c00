package testguest

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// cpioEntry is one file of an initramfs.
type cpioEntry struct {
	Mode uint32 // with the type bits: 0o100000 file, 0o040000 dir, 0o120000 symlink
	Data []byte // file contents, or a symlink's target
}

// writeCPIO writes entries as a newc cpio archive (what the kernel
// unpacks as initramfs), parents first, then the trailer.
func writeCPIO(w io.Writer, entries map[string]cpioEntry) error {
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		di, dj := strings.Count(names[i], "/"), strings.Count(names[j], "/")
		if di != dj {
			return di < dj
		}
		return names[i] < names[j]
	})
	ino := uint32(1)
	write := func(name string, e cpioEntry) error {
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.Mode, 0, 0, 1, 0, len(e.Data), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		buf := []byte(hdr + name + "\x00")
		buf = append(buf, make([]byte, pad4(len(buf)))...)
		buf = append(buf, e.Data...)
		buf = append(buf, make([]byte, pad4(len(e.Data)))...)
		_, err := w.Write(buf)
		return err
	}
	for _, n := range names {
		if err := write(n, entries[n]); err != nil {
			return err
		}
	}
	return write("TRAILER!!!", cpioEntry{})
}

func pad4(n int) int { return (4 - n%4) % 4 }
