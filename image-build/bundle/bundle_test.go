package bundle

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fixture writes the files of a bundle and returns their sources.
func fixture(t *testing.T) []Source {
	t.Helper()
	dir := t.TempDir()
	var out []Source
	for i, name := range Allowed {
		p := filepath.Join(dir, name)
		data := bytes.Repeat([]byte{byte('a' + i)}, 1000*(i+1))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, Source{Name: name, Path: p})
	}
	return out
}

func keys(t *testing.T, seed uint64) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pubText, privText, err := GenerateKey(rand.NewChaCha8([32]byte{byte(seed)}))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ParsePublicKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKey(privText)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func writeBundle(t *testing.T, priv ed25519.PrivateKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Write(&buf, priv, "1.2.3", fixture(t)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	pub, priv := keys(t, 1)
	b := writeBundle(t, priv)
	dir := t.TempDir()
	m, err := Extract(bytes.NewReader(b), pub, dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "1.2.3" || len(m.Files) != 3 {
		t.Errorf("manifest = %+v", m)
	}
	for i, name := range Allowed {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if want := bytes.Repeat([]byte{byte('a' + i)}, 1000*(i+1)); !bytes.Equal(got, want) {
			t.Errorf("%s differs after extract", name)
		}
	}
}

// entries rewrites a bundle's tar entries through edit.
func rewrite(t *testing.T, b []byte, edit func(name string, data []byte) (string, []byte, bool)) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		name, data, keep := edit(hdr.Name, data)
		if !keep {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	return out.Bytes()
}

func TestRefused(t *testing.T) {
	pub, priv := keys(t, 1)
	otherPub, _ := keys(t, 2)
	good := writeBundle(t, priv)
	flip := func(target string) func(string, []byte) (string, []byte, bool) {
		return func(name string, data []byte) (string, []byte, bool) {
			if name == target {
				data = bytes.Clone(data)
				data[len(data)/2] ^= 1
			}
			return name, data, true
		}
	}
	tests := []struct {
		name   string
		bundle []byte
		pub    ed25519.PublicKey
		want   error
	}{
		{"wrong key", good, otherPub, ErrBadSignature},
		{"tampered root", rewrite(t, good, flip(RootName)), pub, ErrTampered},
		{"tampered UKI", rewrite(t, good, flip(UKIName("b"))), pub, ErrTampered},
		{"tampered manifest", rewrite(t, good, flip(ManifestName)), pub, ErrBadSignature},
		{"tampered signature", rewrite(t, good, flip(SignatureName)), pub, ErrBadSignature},
		{"file missing", rewrite(t, good, func(n string, d []byte) (string, []byte, bool) { return n, d, n != UKIName("b") }), pub, ErrTampered},
		{"renamed file", rewrite(t, good, func(n string, d []byte) (string, []byte, bool) {
			if n == RootName {
				return "../evil", d, true
			}
			return n, d, true
		}), pub, ErrTampered},
		{"not a bundle", []byte("hello"), pub, ErrMalformed},
		{"empty", nil, pub, ErrMalformed},
		{"truncated", good[:len(good)/2], pub, ErrTampered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Extract(bytes.NewReader(tt.bundle), tt.pub, dir)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			left, _ := os.ReadDir(dir)
			if len(left) != 0 {
				t.Errorf("refused bundle left files behind: %v", left)
			}
		})
	}
}

func TestTrailingEntryRefused(t *testing.T) {
	pub, priv := keys(t, 1)
	good := writeBundle(t, priv)
	// Re-emit every entry, then one more.
	tr := tar.NewReader(bytes.NewReader(good))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		data, _ := io.ReadAll(tr)
		tw.WriteHeader(&tar.Header{Name: hdr.Name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.WriteHeader(&tar.Header{Name: "extra", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	dir := t.TempDir()
	if _, err := Extract(&out, pub, dir); !errors.Is(err, ErrTampered) {
		t.Fatalf("err = %v, want ErrTampered", err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("left files behind: %v", left)
	}
}

func TestKeys(t *testing.T) {
	pubText, privText, err := GenerateKey(rand.NewChaCha8([32]byte{3}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePublicKey(privText); !errors.Is(err, ErrBadKey) {
		t.Errorf("private key parsed as public: %v", err)
	}
	if _, err := ParsePrivateKey(pubText); !errors.Is(err, ErrBadKey) {
		t.Errorf("public key parsed as private: %v", err)
	}
	for _, bad := range []string{"", "shoal-update-public-v1", "shoal-update-public-v1 !!!", "shoal-update-public-v1 AAAA"} {
		if _, err := ParsePublicKey([]byte(bad)); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParsePublicKey(%q) = %v", bad, err)
		}
	}
	pub, _ := ParsePublicKey(pubText)
	priv, _ := ParsePrivateKey(privText)
	if diff := cmp.Diff([]byte(priv.Public().(ed25519.PublicKey)), []byte(pub)); diff != "" {
		t.Errorf("key pair does not match: %s", diff)
	}
}

func TestParseManifest(t *testing.T) {
	sum := "0000000000000000000000000000000000000000000000000000000000000000"
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"good", `{"format":1,"version":"1.0","files":[{"name":"root.squashfs","size":1,"sha256":"` + sum + `"}]}`, true},
		{"format 2", `{"format":2,"version":"1.0","files":[{"name":"root.squashfs","size":1,"sha256":"` + sum + `"}]}`, false},
		{"unknown field", `{"format":1,"version":"1.0","x":1,"files":[{"name":"root.squashfs","size":1,"sha256":"` + sum + `"}]}`, false},
		{"path in name", `{"format":1,"version":"1.0","files":[{"name":"../root.squashfs","size":1,"sha256":"` + sum + `"}]}`, false},
		{"duplicate", `{"format":1,"version":"1.0","files":[{"name":"root.squashfs","size":1,"sha256":"` + sum + `"},{"name":"root.squashfs","size":1,"sha256":"` + sum + `"}]}`, false},
		{"upper hex", `{"format":1,"version":"1.0","files":[{"name":"root.squashfs","size":1,"sha256":"` + "A" + sum[1:] + `"}]}`, false},
		{"negative size", `{"format":1,"version":"1.0","files":[{"name":"root.squashfs","size":-1,"sha256":"` + sum + `"}]}`, false},
		{"bad version", `{"format":1,"version":"a/b","files":[{"name":"root.squashfs","size":1,"sha256":"` + sum + `"}]}`, false},
		{"no files", `{"format":1,"version":"1.0","files":[]}`, false},
		{"trailing", `{"format":1,"version":"1.0","files":[{"name":"root.squashfs","size":1,"sha256":"` + sum + `"}]} {}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(tt.in))
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Errorf("err %v is not ErrMalformed", err)
			}
			if err == nil {
				again, err := m.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				m2, err := ParseManifest(again)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(m, m2); diff != "" {
					t.Errorf("round trip (-want +got)\n%s", diff)
				}
			}
		})
	}
}

func writeFile(p string, data []byte) error { return os.WriteFile(p, data, 0o644) }
