package bundle

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
)

// Format is the manifest format this code writes and reads.
const Format = 1

// Names of the files in a bundle.
const (
	ManifestName  = "manifest.json"
	SignatureName = "manifest.sig"
	RootName      = "root.squashfs"
)

// UKIName is the bundle file of slot "a" or "b"'s UKI.
func UKIName(slot string) string { return "uki-" + slot + ".efi" }

// Allowed are the only file names a bundle may carry, besides the manifest
// and signature.
var Allowed = []string{RootName, UKIName("a"), UKIName("b")}

// MaxManifest bounds the manifest's size.
const MaxManifest = 64 << 10

// Manifest describes a bundle.
type Manifest struct {
	Format  int    `json:"format"`
	Version string `json:"version"`
	Files   []File `json:"files"`
}

// File is one file of a bundle.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lowercase hex
}

var versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks a manifest's content.
func (m Manifest) Validate() error {
	if m.Format != Format {
		return fmt.Errorf("%w: manifest format %d, this code reads %d", ErrMalformed, m.Format, Format)
	}
	if !versionRE.MatchString(m.Version) {
		return fmt.Errorf("%w: version %q", ErrMalformed, m.Version)
	}
	if len(m.Files) == 0 {
		return fmt.Errorf("%w: manifest lists no files", ErrMalformed)
	}
	seen := map[string]bool{}
	for _, f := range m.Files {
		if !slices.Contains(Allowed, f.Name) {
			return fmt.Errorf("%w: unexpected file %q (allowed: %v)", ErrMalformed, f.Name, Allowed)
		}
		if seen[f.Name] {
			return fmt.Errorf("%w: file %q listed twice", ErrMalformed, f.Name)
		}
		seen[f.Name] = true
		if f.Size < 0 || f.Size > 16<<30 {
			return fmt.Errorf("%w: file %q has size %d", ErrMalformed, f.Name, f.Size)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 || hex.EncodeToString(b) != f.SHA256 {
			return fmt.Errorf("%w: file %q has sha256 %q (want 64 lowercase hex digits)", ErrMalformed, f.Name, f.SHA256)
		}
	}
	return nil
}

// ParseManifest parses and validates a manifest. Unknown fields and
// trailing data are refused.
func ParseManifest(b []byte) (Manifest, error) {
	if len(b) > MaxManifest {
		return Manifest{}, fmt.Errorf("%w: manifest of %d bytes (max %d)", ErrMalformed, len(b), MaxManifest)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: manifest: %v", ErrMalformed, err)
	}
	if dec.More() {
		return Manifest{}, fmt.Errorf("%w: data after the manifest", ErrMalformed)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Marshal encodes a manifest (what gets signed).
func (m Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
