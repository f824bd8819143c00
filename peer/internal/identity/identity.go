// Package identity is a node's identity: a random 128-bit node ID (32 hex
// digits) and an ed25519 key, created on first start in the data dir and
// kept across restarts. The file is written atomically (temp file, fsync,
// rename) with mode 0600; a file that does not parse is an error, never
// silently replaced, so a node cannot change identity by accident.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// FileName is the identity file inside the data dir.
const FileName = "identity.json"

// ErrCorrupt is returned when the identity file exists but cannot be used.
var ErrCorrupt = errors.New("identity file is corrupt")

// ErrMismatch means the stored identity and the node's node-id file name
// two different nodes.
var ErrMismatch = errors.New("identity does not match the node ID")

// Identity is who this node is.
type Identity struct {
	NodeID  string             // 32 lowercase hex digits
	Key     ed25519.PrivateKey // the node's signing key
	Created time.Time          // when the identity was first made
}

// Public returns the node's public key.
func (id Identity) Public() ed25519.PublicKey { return id.Key.Public().(ed25519.PublicKey) }

// Hostname is the default host name: shoal-<first 6 of ID>.
func (id Identity) Hostname() string { return "shoal-" + id.NodeID[:6] }

type file struct {
	NodeID  string    `json:"node_id"`
	Seed    string    `json:"ed25519_seed"` // hex of the 32-byte seed
	Created time.Time `json:"created"`
}

// ValidNodeID reports whether s is 32 lowercase hex digits.
func ValidNodeID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Parse decodes an identity file's bytes.
func Parse(b []byte) (Identity, error) {
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if !ValidNodeID(f.NodeID) {
		return Identity{}, fmt.Errorf("%w: node_id %q is not 32 hex digits", ErrCorrupt, f.NodeID)
	}
	seed, err := hex.DecodeString(f.Seed)
	if err != nil || len(seed) != ed25519.SeedSize {
		return Identity{}, fmt.Errorf("%w: ed25519_seed is not %d hex bytes", ErrCorrupt, ed25519.SeedSize)
	}
	return Identity{NodeID: f.NodeID, Key: ed25519.NewKeyFromSeed(seed), Created: f.Created}, nil
}

// Marshal encodes id as the identity file's bytes.
func (id Identity) Marshal() ([]byte, error) {
	return json.MarshalIndent(file{NodeID: id.NodeID, Seed: hex.EncodeToString(id.Key.Seed()), Created: id.Created.UTC()}, "", "  ")
}

// New makes a fresh identity with node ID nodeID, or a random one when
// nodeID is empty.
func New(nodeID string, now time.Time) (Identity, error) {
	if nodeID == "" {
		var raw [16]byte
		if _, err := rand.Read(raw[:]); err != nil {
			return Identity{}, fmt.Errorf("read random node id: %w", err)
		}
		nodeID = hex.EncodeToString(raw[:])
	}
	if !ValidNodeID(nodeID) {
		return Identity{}, fmt.Errorf("node id %q is not 32 lowercase hex digits", nodeID)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Identity{}, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return Identity{NodeID: nodeID, Key: key, Created: now.UTC().Truncate(time.Second)}, nil
}

// LoadOrCreate reads the identity in dir, or creates and stores a new one
// when there is none; created says which happened. nodeID, when not empty,
// is the node ID this node already goes by (the node-id file netd shares):
// a new identity adopts it, and a stored identity with another ID is an
// error rather than a silent second identity.
func LoadOrCreate(dir, nodeID string, now time.Time) (id Identity, created bool, err error) {
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		id, err := Parse(b)
		if err != nil {
			return Identity{}, false, fmt.Errorf("read identity %q: %w (move it away to give this node a new identity)", path, err)
		}
		if nodeID != "" && id.NodeID != nodeID {
			return Identity{}, false, fmt.Errorf("%w: %q holds node ID %s but this node goes by %s (the node-id file beside it): remove the wrong one", ErrMismatch, path, id.NodeID, nodeID)
		}
		return id, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return Identity{}, false, fmt.Errorf("read identity %q: %w", path, err)
	}
	id, err = New(nodeID, now)
	if err != nil {
		return Identity{}, false, err
	}
	b, err = id.Marshal()
	if err != nil {
		return Identity{}, false, err
	}
	if err := WriteFileAtomic(path, b, 0o600); err != nil {
		return Identity{}, false, fmt.Errorf("store identity: %w", err)
	}
	return id, true, nil
}

// WriteFileAtomic writes b to path through a temp file in the same dir,
// fsyncs it and renames it into place, creating dir (0700) if needed.
func WriteFileAtomic(path string, b []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create dir %q: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create temp file in %q: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %q: %w", tmp, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %q: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %q: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %q: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %q: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
