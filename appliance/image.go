package appliance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/hypervisor"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe"
)

// The `shoal image …` verbs store ISO and disk images in scribe: an
// image is a VSD whose record also says image=1, its format and, once
// the upload has finished, readonly=1. Any node's QEMU reads it over
// NBD from its local scribe socket.

// Fields an image adds to its vsd/NAME record (besides scribe's own).
const (
	imageField     = "image"      // "1": the VSD holds an uploaded image
	imageFormat    = "format"     // hypervisor.FormatISO, FormatRaw or FormatQCOW2
	imageFileSize  = "image_size" // bytes of the uploaded file (the VSD is rounded up to 1 MiB)
	imageReadOnly  = "readonly"   // "1" once the upload finished: scribe exports it read-only
	imageUploaded  = "uploaded"   // RFC 3339 time the upload finished
	imageAlign     = 1 << 20      // VSD size granularity of an image
	uploadBlock    = 1 << 20      // bytes read and written at once
	zeroBlock      = 64 << 10     // granularity of the all-zero check (sparse upload)
	uploadConns    = 4            // NBD connections writing in parallel
	progressEvery  = 5 * time.Second
	progressTTYGap = 250 * time.Millisecond
)

// imageInfo is one image as `shoal image ls --json` prints it.
type imageInfo struct {
	Name     string   `json:"name"`
	Format   string   `json:"format"`
	Size     int64    `json:"size"`     // the file's bytes
	VSDSize  int64    `json:"vsd_size"` // the VSD's size
	Complete bool     `json:"complete"` // uploaded to the end and read-only
	Uploaded string   `json:"uploaded,omitempty"`
	UsedBy   []string `json:"used_by,omitempty"` // VMs that attach it
}

// detectFormat names what header (the file's first 64 KiB or all of a
// shorter file) holds: qcow2 by its magic, an ISO 9660 image by "CD001"
// at 32769, anything else raw.
func detectFormat(header []byte) string {
	switch {
	case bytes.HasPrefix(header, []byte("QFI\xfb")):
		return hypervisor.FormatQCOW2
	case len(header) >= 32774 && string(header[32769:32774]) == "CD001":
		return hypervisor.FormatISO
	}
	return hypervisor.FormatRaw
}

var imageNameBad = regexp.MustCompile(`[^a-z0-9._-]+`)

// imageNameFor is the default image name of a file: its base name in
// lower case with other characters turned into '-'.
func imageNameFor(path string) string {
	n := imageNameBad.ReplaceAllString(strings.ToLower(filepath.Base(path)), "-")
	n = strings.TrimLeft(n, "._-")
	if len(n) > 63 {
		n = n[:63]
	}
	return n
}

// readImages lists the images: VSD records with image=1, with the VMs
// that use each.
func readImages(ctx context.Context, c *client.Client) ([]imageInfo, error) {
	l, err := c.ListState(ctx, scribe.VSDPrefix)
	if err != nil {
		return nil, err
	}
	vms, err := c.ListState(ctx, hypervisor.RecordPrefix)
	if err != nil {
		return nil, err
	}
	var recs []hypervisor.VMRecord
	for _, r := range vms.Records {
		if v, err := hypervisor.ParseVMRecord(r.Key, registers(r)); err == nil {
			recs = append(recs, v)
		}
	}
	out := []imageInfo{}
	for _, r := range l.Records {
		f := registers(r)
		if f[imageField] != "1" {
			continue
		}
		rec, err := scribe.ParseVSD(r)
		if err != nil {
			continue
		}
		in := imageInfo{Name: rec.Name, Format: f[imageFormat], VSDSize: rec.Size, Complete: f[imageReadOnly] == "1", Uploaded: f[imageUploaded]}
		in.Size, _ = strconv.ParseInt(f[imageFileSize], 10, 64)
		for _, v := range recs {
			if v.UsesVSD(rec.Name) {
				in.UsedBy = append(in.UsedBy, v.Name)
			}
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b imageInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// getImage reads one image; a missing one, or a VSD that is no image,
// is an error that says so.
func getImage(ctx context.Context, c *client.Client, name string) (imageInfo, error) {
	imgs, err := readImages(ctx, c)
	if err != nil {
		return imageInfo{}, err
	}
	for _, in := range imgs {
		if in.Name == name {
			return in, nil
		}
	}
	return imageInfo{}, fmt.Errorf("no image named %q (`shoal image ls` lists them; `shoal image upload FILE` adds one)", name)
}

// subEnv is env with the output of a verb called from another verb
// captured in buf.
func subEnv(env *verb.Env, buf *bytes.Buffer) *verb.Env {
	e := *env
	e.Stdout, e.Stderr = buf, buf
	return &e
}

// callVerb runs another verb (the same code path as the CLI) with its
// output discarded; its error says what went wrong.
func callVerb(ctx context.Context, env *verb.Env, f verb.Func, args ...string) error {
	var buf bytes.Buffer
	return f(ctx, subEnv(env, &buf), args)
}

// ImageUpload is `shoal image upload FILE [--name NAME]`.
func ImageUpload(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "image upload")
	name := fs.String("name", "", "image name (default: the file's name in lower case)")
	replicas := fs.String("replicas", strconv.Itoa(scribe.DefaultReplicas), "copies of every extent, on distinct nodes: 2 or 3")
	nbdSocket := fs.String("nbd-socket", scribe.DefaultNBDSocket, "this node's scribe NBD socket")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	path := fs.Arg(0)
	if *name == "" {
		*name = imageNameFor(path)
	}
	if err := scribe.ValidName(*name); err != nil {
		return verb.Usagef("image name: %v (give --name)", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open image file: %w", err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("size of %s: %w", path, err)
	}
	if size == 0 {
		return fmt.Errorf("%s is empty: nothing to upload", path)
	}
	header := make([]byte, 64<<10)
	n, _ := f.ReadAt(header, 0)
	format := detectFormat(header[:n])

	c := fs.client()
	if err := replaceIncomplete(ctx, env, c, *name, *fs.socket); err != nil {
		return err
	}
	vsdSize := (size + imageAlign - 1) / imageAlign * imageAlign
	if err := callVerb(ctx, env, VSDCreate, *name, "--size", fmt.Sprintf("%dM", vsdSize/imageAlign), "--replicas", *replicas, "--socket", *fs.socket); err != nil {
		return fmt.Errorf("create the image's VSD: %w", err)
	}
	if _, err := c.PutState(ctx, scribe.VSDPrefix+*name, map[string]string{imageField: "1", imageFormat: format,
		imageFileSize: strconv.FormatInt(size, 10), imageReadOnly: "", imageUploaded: ""}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "uploading %s as image %s (%s, %s)\n", path, *name, format, scribe.FormatSize(vsdSize))
	up := uploader{src: f, size: size, socket: *nbdSocket, export: *name,
		progress: newProgress(env.Stderr, "upload "+*name, size, time.Now)}
	written, err := up.run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("upload of image %s interrupted (%w): it stays incomplete (`shoal image ls`); run the same upload again to replace it, or `shoal image rm %s`", *name, err, *name)
	}
	if _, err := c.PutState(ctx, scribe.VSDPrefix+*name, map[string]string{imageReadOnly: "1",
		imageUploaded: time.Now().UTC().Format(time.RFC3339)}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "uploaded image %s: %s, %s (%s written, the rest all zeros); `shoal vm create NAME --iso %s` attaches it\n",
		*name, format, scribe.FormatSize(size), scribe.FormatSize(written), *name)
	return nil
}

// replaceIncomplete removes the VSD of an earlier, unfinished upload of
// name; a finished image or a VSD that is no image is an error.
func replaceIncomplete(ctx context.Context, env *verb.Env, c *client.Client, name, socket string) error {
	r, err := c.GetState(ctx, scribe.VSDPrefix+name)
	if errors.Is(err, client.ErrStateNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	f := registers(r)
	switch {
	case f[imageField] != "1":
		return fmt.Errorf("a VSD named %q exists and is no image: pick another --name", name)
	case f[imageReadOnly] == "1":
		return fmt.Errorf("image %s exists already: pick another --name, or `shoal image rm %s` first", name, name)
	}
	fmt.Fprintf(env.Stderr, "replacing the incomplete upload of image %s\n", name)
	// --force: the interrupted uploader may have died with it open.
	if err := callVerb(ctx, env, VSDRm, name, "--force", "--socket", socket); err != nil {
		return fmt.Errorf("remove the incomplete image %s: %w", name, err)
	}
	return nil
}

// uploader writes src to an NBD export, skipping all-zero blocks (the
// export is a new VSD: unwritten extents read as zeros).
type uploader struct {
	src      io.ReaderAt
	size     int64
	socket   string
	export   string
	progress *progress
	// dial opens an NBD connection; nil: scribe.DialNBD.
	dial func(ctx context.Context, socket, export string) (nbdWriter, error)
}

// dialImageNBD opens an NBD connection for an upload (tests replace it).
var dialImageNBD = func(ctx context.Context, socket, export string) (nbdWriter, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, err
	}
	c, err := scribe.NewNBDClient(conn, export)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return imageNBD{c, conn}, nil
}

// imageNBD is an NBD client that can be aborted mid-request.
type imageNBD struct {
	*scribe.NBDClient
	conn net.Conn
}

func (c imageNBD) Abort() { c.conn.Close() }

// nbdWriter is what the uploader needs of an NBD connection.
type nbdWriter interface {
	WriteAt(p []byte, off int64, fua bool) error
	Flush() error
	Close() error
	// Abort breaks the connection: a request in flight returns an error.
	Abort()
}

type uploadJob struct {
	data []byte
	off  int64
	back []byte // the pool buffer to hand back once written, nil for a copy
}

// run uploads and returns the bytes written (not counting zero blocks).
func (u *uploader) run(ctx context.Context) (int64, error) {
	dial := u.dial
	if dial == nil {
		dial = dialImageNBD
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var conns []nbdWriter
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range uploadConns {
		c, err := dial(ctx, u.socket, u.export)
		if err != nil {
			return 0, fmt.Errorf("open VSD %s on %s: %w", u.export, u.socket, err)
		}
		conns = append(conns, c)
	}
	// Interrupted, or a write failed: break the connections, so that no
	// worker waits on a request that will not be answered.
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.Abort()
		}
	})
	defer stop()
	jobs := make(chan uploadJob)
	free := make(chan []byte, 2*uploadConns)
	for range cap(free) {
		free <- make([]byte, uploadBlock)
	}
	var written, done atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := c.WriteAt(j.data, j.off, false); err != nil {
					cancel(fmt.Errorf("write at %d: %w", j.off, err))
				} else {
					written.Add(int64(len(j.data)))
				}
				if j.back != nil {
					free <- j.back
				}
			}
		}()
	}
	readErr := u.read(ctx, jobs, free, &done)
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return written.Load(), err
	}
	if readErr != nil {
		return written.Load(), readErr
	}
	for _, c := range conns {
		if err := c.Flush(); err != nil {
			return written.Load(), fmt.Errorf("flush: %w", err)
		}
	}
	u.progress.update(u.size, true)
	return written.Load(), nil
}

// read reads src block by block and queues its non-zero runs.
func (u *uploader) read(ctx context.Context, jobs chan<- uploadJob, free chan []byte, done *atomic.Int64) error {
	zero := make([]byte, zeroBlock)
	for off := int64(0); off < u.size; off += uploadBlock {
		var buf []byte
		select {
		case buf = <-free:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		n := int(min(uploadBlock, u.size-off))
		if _, err := u.src.ReadAt(buf[:n], off); err != nil && !(errors.Is(err, io.EOF)) {
			return fmt.Errorf("read the image file at %d: %w", off, err)
		}
		// The last block is padded with zeros to a 4 KiB multiple.
		end := min((n+4095)/4096*4096, len(buf))
		clear(buf[n:end])
		// Queue each run of non-zero zeroBlocks; the buffer goes back
		// to free once written, so hand out copies for all runs but the
		// last.
		var runs [][2]int
		for i := 0; i < end; {
			j := min(i+zeroBlock, end)
			if bytes.Equal(buf[i:j], zero[:j-i]) {
				i = j
				continue
			}
			k := j
			for k < end {
				l := min(k+zeroBlock, end)
				if bytes.Equal(buf[k:l], zero[:l-k]) {
					break
				}
				k = l
			}
			runs = append(runs, [2]int{i, k})
			i = k
		}
		if len(runs) == 0 {
			free <- buf
		}
		for x, r := range runs {
			j := uploadJob{data: buf[r[0]:r[1]], off: off + int64(r[0]), back: buf}
			if x < len(runs)-1 {
				j.data, j.back = append([]byte(nil), j.data...), nil
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		done.Store(off + int64(n))
		u.progress.update(done.Load(), false)
	}
	return nil
}

// progress prints an upload's progress on w: a line rewritten in place
// on a terminal, else a line every progressEvery.
type progress struct {
	w     io.Writer
	tty   bool
	what  string
	total int64
	now   func() time.Time
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, what string, total int64, now func() time.Time) *progress {
	t := now()
	return &progress{w: w, tty: isTerminal(w), what: what, total: total, now: now, start: t, last: t}
}

func (p *progress) update(done int64, final bool) {
	t := p.now()
	gap := progressEvery
	if p.tty {
		gap = progressTTYGap
	}
	if !final && t.Sub(p.last) < gap {
		return
	}
	p.last = t
	el := t.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	eta := "-"
	if rate > 0 && done < p.total {
		eta = time.Duration(float64(p.total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	pct := 100.0
	if p.total > 0 {
		pct = float64(done) * 100 / float64(p.total)
	}
	line := fmt.Sprintf("%s: %3.0f%% %s of %s, %.1f MB/s, ETA %s", p.what, pct, scribe.FormatSize(done), scribe.FormatSize(p.total), rate/1e6, eta)
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r%s\x1b[K\n", line)
	case p.tty:
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
	default:
		fmt.Fprintln(p.w, line)
	}
}

// ImageLs is `shoal image ls [--json]`.
func ImageLs(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "image ls")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	imgs, err := readImages(ctx, fs.client())
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, imgs)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tFORMAT\tSIZE\tSTATE\tUSED BY")
	for _, in := range imgs {
		state := "ready"
		if !in.Complete {
			state = "incomplete (upload again to replace)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", in.Name, in.Format, scribe.FormatSize(in.Size), state, dash(strings.Join(in.UsedBy, ",")))
	}
	return tw.Flush()
}

// ImageRm is `shoal image rm NAME`: refused while a VM uses the image.
func ImageRm(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "image rm")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	c := fs.client()
	in, err := getImage(ctx, c, fs.Arg(0))
	if err != nil {
		return err
	}
	if len(in.UsedBy) > 0 {
		return fmt.Errorf("image %s is used by vm %s: remove it from them first (`shoal vm rm`)", in.Name, strings.Join(in.UsedBy, ", "))
	}
	force := []string{}
	if !in.Complete {
		force = append(force, "--force") // its uploader may have died with it open
	}
	if err := callVerb(ctx, env, VSDRm, append([]string{in.Name, "--socket", *fs.socket}, force...)...); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "removed image %s\n", in.Name)
	return nil
}
