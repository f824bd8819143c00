package faultdisk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Mode is how a disk behaves.
type Mode int32

// The modes of a disk.
const (
	ModeOK     Mode = iota // pass every operation through
	ModeEIO                // every read, write, fsync and fallocate fails with EIO
	ModeENOSPC             // writes that allocate fail with ENOSPC
)

func (m Mode) String() string {
	switch m {
	case ModeOK:
		return "ok"
	case ModeEIO:
		return "eio"
	case ModeENOSPC:
		return "enospc"
	}
	return fmt.Sprintf("mode(%d)", int32(m))
}

// ParseMode parses "ok", "eio" or "enospc".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "ok":
		return ModeOK, nil
	case "eio":
		return ModeEIO, nil
	case "enospc":
		return ModeENOSPC, nil
	}
	return 0, fmt.Errorf("unknown disk mode %q (want ok, eio or enospc): %w", s, ErrBadRequest)
}

// Backing is one disk: its name in the mounted directory and the sparse
// file behind it.
type Backing struct {
	Name string // "disk1"; letters, digits, '-' and '_' only
	Path string // existing regular file
}

// Config configures a Server. The zero value is not usable: Mountpoint,
// ControlSocket and Disks are required.
type Config struct {
	Mountpoint    string       // existing empty directory
	ControlSocket string       // path of the UNIX control socket (created, removed on exit)
	Disks         []Backing    // at least one
	Log           *slog.Logger // nil: discard
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Validate reports a missing or bad field.
func (c Config) Validate() error {
	if c.Mountpoint == "" || c.ControlSocket == "" {
		return errors.New("faultdisk config: Mountpoint and ControlSocket are required")
	}
	if len(c.Disks) == 0 {
		return errors.New("faultdisk config: no disks")
	}
	seen := map[string]bool{}
	for _, d := range c.Disks {
		if !nameRE.MatchString(d.Name) || seen[d.Name] {
			return fmt.Errorf("faultdisk config: bad or duplicate disk name %q", d.Name)
		}
		seen[d.Name] = true
		if d.Path == "" {
			return fmt.Errorf("faultdisk config: disk %q has no backing path", d.Name)
		}
	}
	return nil
}

// Serve mounts the file system, serves the control socket and blocks until
// ctx is cancelled; then it unmounts and returns nil. ready, if not nil, is
// closed once the mount and the control socket are usable.
func Serve(ctx context.Context, cfg Config, ready chan<- struct{}) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root := &dirNode{disks: map[string]*diskNode{}}
	for _, b := range cfg.Disks {
		f, err := os.OpenFile(b.Path, os.O_RDWR, 0)
		if err != nil {
			root.close()
			return fmt.Errorf("open backing file of %s: %w", b.Name, err)
		}
		root.order = append(root.order, b.Name)
		root.disks[b.Name] = &diskNode{name: b.Name, file: f}
	}
	defer root.close()

	os.Remove(cfg.ControlSocket)
	ln, err := net.Listen("unix", cfg.ControlSocket)
	if err != nil {
		return fmt.Errorf("listen on control socket: %w", err)
	}
	defer os.Remove(cfg.ControlSocket)

	zero := time.Duration(0)
	server, err := fs.Mount(cfg.Mountpoint, root, &fs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther: true,
			FsName:     "shoal-qa-faultdisk",
			Name:       "faultdisk",
		},
		EntryTimeout: &zero,
		AttrTimeout:  &zero,
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("mount faultdisk on %s: %w", cfg.Mountpoint, err)
	}
	log.Info("faultdisk mounted", "mountpoint", cfg.Mountpoint, "disks", root.order)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveControl(ln, root, log)
	}()
	if ready != nil {
		close(ready)
	}
	<-ctx.Done()
	ln.Close()
	wg.Wait()
	// Unmount waits until the kernel drops the connection, which a copy of
	// the mount in another mount namespace can delay forever; give up after
	// a while (the caller is then expected to exit, which aborts it).
	unmounted := make(chan struct{})
	go func() {
		defer close(unmounted)
		if err := server.Unmount(); err != nil {
			log.Warn("unmount faultdisk, detaching", "err", err)
			unix.Unmount(cfg.Mountpoint, unix.MNT_DETACH)
		}
		server.Wait()
	}()
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case <-unmounted:
		log.Info("faultdisk unmounted", "mountpoint", cfg.Mountpoint)
		return nil
	case <-timer.C:
		unix.Unmount(cfg.Mountpoint, unix.MNT_DETACH)
		return fmt.Errorf("unmount %s: %w", cfg.Mountpoint, ErrStillMounted)
	}
}

func serveControl(ln net.Listener, root *dirNode, log *slog.Logger) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				reply := root.handle(sc.Text(), log)
				if _, err := fmt.Fprintln(c, reply); err != nil {
					return
				}
			}
		}()
	}
}

// handle runs one control command and returns the reply line: "ok ..." or
// "error ...".
func (d *dirNode) handle(line string, log *slog.Logger) string {
	f := strings.Fields(line)
	switch {
	case len(f) == 1 && f[0] == "ping":
		return "ok pong"
	case len(f) == 1 && f[0] == "status":
		var parts []string
		for _, name := range d.order {
			parts = append(parts, name+"="+d.disks[name].Mode().String())
		}
		return "ok " + strings.Join(parts, " ")
	case len(f) == 3 && f[0] == "mode":
		disk, ok := d.disks[f[1]]
		if !ok {
			return fmt.Sprintf("error no disk %q (have %s)", f[1], strings.Join(d.order, ", "))
		}
		m, err := ParseMode(f[2])
		if err != nil {
			return "error " + err.Error()
		}
		disk.mode.Store(int32(m))
		log.Info("disk mode", "disk", disk.name, "mode", m)
		return "ok " + m.String()
	}
	return fmt.Sprintf("error bad command %q (want: ping | status | mode DISK ok|eio|enospc)", line)
}

// SetMode asks the server behind socket to switch disk to mode.
func SetMode(ctx context.Context, socket, disk string, mode Mode) error {
	_, err := request(ctx, socket, fmt.Sprintf("mode %s %s", disk, mode))
	return err
}

// Status returns each disk's mode, "disk1=ok disk2=eio ...".
func Status(ctx context.Context, socket string) (string, error) {
	return request(ctx, socket, "status")
}

// Ping reports whether the server behind socket answers.
func Ping(ctx context.Context, socket string) error {
	_, err := request(ctx, socket, "ping")
	return err
}

func request(ctx context.Context, socket, line string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", fmt.Errorf("reach faultdisk server at %s (is the cluster up?): %w", socket, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	if _, err := fmt.Fprintln(c, line); err != nil {
		return "", fmt.Errorf("faultdisk request %q: %w", line, err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("faultdisk request %q: %w", line, err)
	}
	reply = strings.TrimSpace(reply)
	if msg, ok := strings.CutPrefix(reply, "error "); ok {
		return "", fmt.Errorf("faultdisk: %s: %w", msg, ErrBadRequest)
	}
	return strings.TrimPrefix(reply, "ok "), nil
}

type dirNode struct {
	fs.Inode
	order []string
	disks map[string]*diskNode
}

var _ fs.NodeOnAdder = (*dirNode)(nil)

func (d *dirNode) OnAdd(ctx context.Context) {
	for i, name := range d.order {
		ch := d.NewPersistentInode(ctx, d.disks[name], fs.StableAttr{Mode: fuse.S_IFREG, Ino: uint64(i + 2)})
		d.AddChild(name, ch, false)
	}
}

func (d *dirNode) close() {
	for _, n := range d.disks {
		n.file.Close()
	}
}

type diskNode struct {
	fs.Inode
	name string
	file *os.File
	mode atomic.Int32
}

var (
	_ fs.NodeOpener    = (*diskNode)(nil)
	_ fs.NodeGetattrer = (*diskNode)(nil)
	_ fs.NodeSetattrer = (*diskNode)(nil)
	_ fs.NodeReader    = (*diskNode)(nil)
	_ fs.NodeWriter    = (*diskNode)(nil)
	_ fs.NodeFsyncer   = (*diskNode)(nil)
	_ fs.NodeFlusher   = (*diskNode)(nil)
	_ fs.NodeAllocater = (*diskNode)(nil)
)

func (n *diskNode) Mode() Mode { return Mode(n.mode.Load()) }

func (n *diskNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (n *diskNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(n.file.Fd()), &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	out.Ino = n.StableAttr().Ino
	return 0
}

func (n *diskNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok {
		if n.Mode() == ModeEIO {
			return syscall.EIO
		}
		if err := n.file.Truncate(int64(sz)); err != nil {
			return fs.ToErrno(err)
		}
	}
	return n.Getattr(ctx, f, out)
}

func (n *diskNode) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if n.Mode() == ModeEIO {
		return nil, syscall.EIO
	}
	k, err := n.file.ReadAt(dest, off)
	if err != nil && k == 0 && !errors.Is(err, io.EOF) {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *diskNode) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	switch n.Mode() {
	case ModeEIO:
		return 0, syscall.EIO
	case ModeENOSPC:
		if n.allocates(off, int64(len(data))) {
			return 0, syscall.ENOSPC
		}
	}
	k, err := n.file.WriteAt(data, off)
	if err != nil {
		return uint32(k), fs.ToErrno(err)
	}
	return uint32(k), 0
}

// allocates reports whether writing [off, off+length) touches a hole or
// grows the backing file.
func (n *diskNode) allocates(off, length int64) bool {
	fi, err := n.file.Stat()
	if err != nil || off+length > fi.Size() {
		return true
	}
	hole, err := unix.Seek(int(n.file.Fd()), off, unix.SEEK_HOLE)
	if err != nil {
		return true
	}
	return hole < off+length
}

func (n *diskNode) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if n.Mode() == ModeEIO {
		return syscall.EIO
	}
	return fs.ToErrno(n.file.Sync())
}

func (n *diskNode) Flush(ctx context.Context, f fs.FileHandle) syscall.Errno {
	return 0
}

func (n *diskNode) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	switch n.Mode() {
	case ModeEIO:
		return syscall.EIO
	case ModeENOSPC:
		if mode&unix.FALLOC_FL_PUNCH_HOLE == 0 {
			return syscall.ENOSPC
		}
	}
	return fs.ToErrno(unix.Fallocate(int(n.file.Fd()), mode, int64(off), int64(size)))
}
