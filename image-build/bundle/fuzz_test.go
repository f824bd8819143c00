package bundle

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseManifest: any input either parses into a manifest that
// validates and survives a Marshal round trip, or returns an error; never
// a panic.
func FuzzParseManifest(f *testing.F) {
	sum := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	f.Add([]byte(`{"format":1,"version":"1.0","files":[{"name":"root.squashfs","size":0,"sha256":"` + sum + `"}]}`))
	f.Add([]byte(`{"format":1,"version":"0.1.0-dev","files":[{"name":"root.squashfs","size":12,"sha256":"` + sum + `"},{"name":"uki-a.efi","size":3,"sha256":"` + sum + `"},{"name":"uki-b.efi","size":3,"sha256":"` + sum + `"}]}`))
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest does not validate: %v", err)
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := ParseManifest(again)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if diff := cmp.Diff(m, m2); diff != "" {
			t.Fatalf("round trip (-want +got)\n%s", diff)
		}
	})
}

// FuzzExtract: Extract never panics and never accepts a bundle not signed
// by the key.
func FuzzExtract(f *testing.F) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	var good bytes.Buffer
	dir := f.TempDir()
	src := dir + "/root"
	if err := writeFile(src, []byte("root file system")); err != nil {
		f.Fatal(err)
	}
	if _, err := Write(&good, priv, "1.0", []Source{{Name: RootName, Path: src}}); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:600])
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out := t.TempDir()
		m, err := Extract(bytes.NewReader(b), pub, out)
		if err == nil && !bytes.Equal(b, good.Bytes()) {
			// Only re-encodings of the signed manifest may pass.
			if m.Version != "1.0" {
				t.Fatalf("accepted a bundle with version %q", m.Version)
			}
		}
	})
}
