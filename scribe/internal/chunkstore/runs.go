package chunkstore

// Span is the part of a volume range that falls in one extent.
type Span struct {
	Extent uint64
	// Off and N locate the span within its extent.
	Off, N int64
	// ReqStart is the span's offset within the range.
	ReqStart int64
}

// Spans splits [off, off+length) of a volume into extents of chunkSize
// bytes. The caller checks the range against the volume.
func Spans(off, length, chunkSize int64) []Span {
	var out []Span
	for pos := off; pos < off+length; {
		in := pos % chunkSize
		n := min(chunkSize-in, off+length-pos)
		out = append(out, Span{Extent: uint64(pos / chunkSize), Off: in, N: n, ReqStart: pos - off})
		pos += n
	}
	return out
}

// Run is a stretch of bytes whose blocks are all written or all not.
type Run struct {
	Length  int64
	Written bool
}

// AppendRuns appends the runs of [off, off+n) of a chunk whose written-
// block bitmap is written (nil: no chunk) to runs, merging with the last
// run. It stops at limit runs and then reports false.
func AppendRuns(runs []Run, written []byte, off, n int64, limit int) ([]Run, bool) {
	for pos := off; pos < off+n; {
		b := pos / BlockSize
		l := min((b+1)*BlockSize, off+n) - pos
		if written == nil {
			l = off + n - pos
		}
		w := written != nil && bit(written, int(b))
		if k := len(runs) - 1; k >= 0 && runs[k].Written == w {
			runs[k].Length += l
		} else if len(runs) == limit {
			return runs, false
		} else {
			runs = append(runs, Run{Length: l, Written: w})
		}
		pos += l
	}
	return runs, true
}
