package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Source is a file to put in a bundle.
type Source struct {
	Name string // one of Allowed
	Path string // on this machine
}

// Write writes a signed bundle of version with files to w.
func Write(w io.Writer, key ed25519.PrivateKey, version string, files []Source) (Manifest, error) {
	m := Manifest{Format: Format, Version: version}
	for _, s := range files {
		sum, size, err := hashFile(s.Path)
		if err != nil {
			return Manifest{}, fmt.Errorf("bundle %s: %w", s.Name, err)
		}
		m.Files = append(m.Files, File{Name: s.Name, Size: size, SHA256: sum})
	}
	manifest, err := m.Marshal()
	if err != nil {
		return Manifest{}, err
	}
	sig := ed25519.Sign(key, manifest)

	tw := tar.NewWriter(w)
	modTime := time.Unix(0, 0)
	add := func(name string, size int64, body io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: modTime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		n, err := io.Copy(tw, body)
		if err == nil && n != size {
			err = fmt.Errorf("%s changed while bundling", name)
		}
		return err
	}
	if err := add(ManifestName, int64(len(manifest)), bytes.NewReader(manifest)); err != nil {
		return Manifest{}, fmt.Errorf("write bundle: %w", err)
	}
	if err := add(SignatureName, int64(len(sig)), bytes.NewReader(sig)); err != nil {
		return Manifest{}, fmt.Errorf("write bundle: %w", err)
	}
	for i, s := range files {
		f, err := os.Open(s.Path)
		if err != nil {
			return Manifest{}, fmt.Errorf("write bundle: %w", err)
		}
		err = add(s.Name, m.Files[i].Size, f)
		f.Close()
		if err != nil {
			return Manifest{}, fmt.Errorf("write bundle %s: %w", s.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return Manifest{}, fmt.Errorf("write bundle: %w", err)
	}
	return m, nil
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Extract reads a bundle from r, checks the manifest's signature against
// pub, and writes each file into dir (which must exist) while checking its
// size and sha256. On any error it removes what it wrote and returns
// ErrBadSignature, ErrTampered or ErrMalformed (wrapped).
func Extract(r io.Reader, pub ed25519.PublicKey, dir string) (m Manifest, err error) {
	if len(pub) != ed25519.PublicKeySize {
		return Manifest{}, fmt.Errorf("%w: public key of %d bytes", ErrBadKey, len(pub))
	}
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	tr := tar.NewReader(r)
	manifest, err := readSmall(tr, ManifestName, MaxManifest)
	if err != nil {
		return Manifest{}, err
	}
	sig, err := readSmall(tr, SignatureName, ed25519.SignatureSize)
	if err != nil {
		return Manifest{}, err
	}
	if !ed25519.Verify(pub, manifest, sig) {
		return Manifest{}, ErrBadSignature
	}
	m, err = ParseManifest(manifest)
	if err != nil {
		return Manifest{}, err
	}
	for _, f := range m.Files {
		hdr, err := tr.Next()
		if err != nil {
			return Manifest{}, fmt.Errorf("%w: bundle ends before %s: %v", ErrTampered, f.Name, err)
		}
		if hdr.Name != f.Name || hdr.Typeflag != tar.TypeReg || hdr.Size != f.Size {
			return Manifest{}, fmt.Errorf("%w: found %q (%d bytes) where the manifest has %q (%d bytes)", ErrTampered, hdr.Name, hdr.Size, f.Name, f.Size)
		}
		dst := filepath.Join(dir, f.Name)
		part := dst + ".part"
		written = append(written, part)
		out, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			return Manifest{}, fmt.Errorf("extract %s: %w", f.Name, err)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(tr, f.Size))
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrHeader) {
			return Manifest{}, fmt.Errorf("%w: %s is cut short: %v", ErrTampered, f.Name, err)
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("extract %s: %w", f.Name, err)
		}
		if n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
			return Manifest{}, fmt.Errorf("%w: %s", ErrTampered, f.Name)
		}
		if err := os.Rename(part, dst); err != nil {
			return Manifest{}, fmt.Errorf("extract %s: %w", f.Name, err)
		}
		written[len(written)-1] = dst
	}
	if hdr, err := tr.Next(); err != io.EOF {
		if err == nil {
			return Manifest{}, fmt.Errorf("%w: unexpected %q after the files of the manifest", ErrTampered, hdr.Name)
		}
		return Manifest{}, fmt.Errorf("%w: after the last file: %v", ErrTampered, err)
	}
	return m, nil
}

func readSmall(tr *tar.Reader, name string, max int64) ([]byte, error) {
	hdr, err := tr.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: want %s first: %v", ErrMalformed, name, err)
	}
	if hdr.Name != name || hdr.Typeflag != tar.TypeReg || hdr.Size < 0 || hdr.Size > max {
		return nil, fmt.Errorf("%w: want %s (at most %d bytes), found %q (%d bytes)", ErrMalformed, name, max, hdr.Name, hdr.Size)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrMalformed, name, err)
	}
	return b, nil
}
