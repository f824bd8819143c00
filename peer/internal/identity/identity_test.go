package identity

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadOrCreateKeepsIdentity(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, created, err := LoadOrCreate(dir, "", now)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreate = created %v, err %v; want created", created, err)
	}
	if !ValidNodeID(a.NodeID) {
		t.Fatalf("node id %q is not 32 hex digits", a.NodeID)
	}
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("identity file mode = %o, want 600", got)
	}
	b, created, err := LoadOrCreate(dir, "", now.Add(time.Hour))
	if err != nil || created {
		t.Fatalf("second LoadOrCreate = created %v, err %v; want loaded", created, err)
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("identity changed across restart (-first +second):\n%s", diff)
	}
}

func TestLoadOrCreateCorrupt(t *testing.T) {
	for name, content := range map[string]string{
		"not json":   "garbage",
		"bad id":     `{"node_id":"xyz","ed25519_seed":"00"}`,
		"short seed": `{"node_id":"0123456789abcdef0123456789abcdef","ed25519_seed":"00"}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			os.WriteFile(path, []byte(content), 0o600)
			_, _, err := LoadOrCreate(dir, "", time.Unix(0, 0))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != content {
				t.Errorf("corrupt file was changed to %q", got)
			}
		})
	}
}

func TestTwoIdentitiesDiffer(t *testing.T) {
	a, _ := New("", time.Unix(0, 0))
	b, _ := New("", time.Unix(0, 0))
	if a.NodeID == b.NodeID {
		t.Errorf("two new identities share node id %s", a.NodeID)
	}
}

func FuzzParse(f *testing.F) {
	id, _ := New("", time.Unix(0, 0))
	good, _ := id.Marshal()
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"node_id":"0123456789abcdef0123456789abcdef","ed25519_seed":"zz"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := Parse(b)
		if err != nil {
			return
		}
		again, err := id.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		id2, err := Parse(again)
		if err != nil || id2.NodeID != id.NodeID || !id2.Key.Equal(id.Key) {
			t.Fatalf("round trip changed identity: %v", err)
		}
	})
}

func TestAdoptsNodeIDAndRefusesAnother(t *testing.T) {
	dir := t.TempDir()
	const want = "0123456789abcdef0123456789abcdef"
	id, created, err := LoadOrCreate(dir, want, time.Unix(0, 0))
	if err != nil || !created {
		t.Fatalf("LoadOrCreate = %v, created %v", err, created)
	}
	if id.NodeID != want {
		t.Errorf("new identity has node ID %s, want the given %s", id.NodeID, want)
	}
	if again, _, err := LoadOrCreate(dir, want, time.Unix(0, 0)); err != nil || again.NodeID != want {
		t.Errorf("reload with the same node ID = %v, %v", again.NodeID, err)
	}
	if _, _, err := LoadOrCreate(dir, "ffffffffffffffffffffffffffffffff", time.Unix(0, 0)); !errors.Is(err, ErrMismatch) {
		t.Errorf("reload with another node ID: err = %v, want ErrMismatch", err)
	}
	if _, _, err := LoadOrCreate(t.TempDir(), "not-hex", time.Unix(0, 0)); err == nil {
		t.Error("a malformed node ID was adopted")
	}
}
