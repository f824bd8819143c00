package peer

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/identity"
)

// Files in the data dir.
const (
	clusterFile  = "cluster.json"
	keyringFile  = "keyring.json"
	snapshotFile = "serf.snapshot"
	manualFile   = "manual-join" // present after `cluster leave`: no auto-join or formation
)

// clusterState is what a member keeps about its cluster. It is the seed of
// the replicated state: Policy and Revoked are cluster-wide settings merged
// between members (policy last-writer-wins, revocations grow only) until
// the state store carries them.
type clusterState struct {
	ClusterID  string    `json:"cluster_id"`
	CACert     string    `json:"ca_cert"`
	CAKey      string    `json:"ca_key"`
	NodeCert   string    `json:"node_cert"`
	Policy     string    `json:"policy"`
	PolicyTime time.Time `json:"policy_time"`
	PolicyBy   string    `json:"policy_by"`
	Revoked    []string  `json:"revoked,omitempty"`
}

// meta is the cluster-wide part of clusterState exchanged between members.
type meta struct {
	Policy     string    `json:"policy"`
	PolicyTime time.Time `json:"policy_time"`
	PolicyBy   string    `json:"policy_by"`
	Revoked    []string  `json:"revoked,omitempty"`
}

func (c *clusterState) meta() meta {
	return meta{Policy: c.Policy, PolicyTime: c.PolicyTime, PolicyBy: c.PolicyBy, Revoked: slices.Clone(c.Revoked)}
}

// merge folds m into c and reports whether c changed. Commutative,
// associative and idempotent.
func (c *clusterState) merge(m meta) bool {
	changed := false
	if m.PolicyTime.After(c.PolicyTime) || (m.PolicyTime.Equal(c.PolicyTime) && m.PolicyBy > c.PolicyBy) {
		if m.Policy != "" && (m.Policy != c.Policy || m.PolicyBy != c.PolicyBy || !m.PolicyTime.Equal(c.PolicyTime)) {
			c.Policy, c.PolicyTime, c.PolicyBy = m.Policy, m.PolicyTime, m.PolicyBy
			changed = true
		}
	}
	for _, id := range m.Revoked {
		if !slices.Contains(c.Revoked, id) {
			c.Revoked = append(c.Revoked, id)
			changed = true
		}
	}
	slices.Sort(c.Revoked)
	return changed
}

func (c *clusterState) revoked(id string) bool { return slices.Contains(c.Revoked, id) }

func parseClusterState(b []byte) (*clusterState, error) {
	var c clusterState
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	if c.ClusterID == "" || c.CACert == "" || c.NodeCert == "" {
		return nil, errors.New("missing cluster id, CA or node certificate")
	}
	return &c, nil
}

func loadClusterState(dir string) (*clusterState, error) {
	path := filepath.Join(dir, clusterFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cluster state %q: %w", path, err)
	}
	c, err := parseClusterState(b)
	if err != nil {
		return nil, fmt.Errorf("cluster state %q is corrupt: %w (move it away and the node will be unclaimed)", path, err)
	}
	return c, nil
}

func saveClusterState(dir string, c *clusterState) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return identity.WriteFileAtomic(filepath.Join(dir, clusterFile), b, 0o600)
}

func loadKeyring(dir string) ([][]byte, error) {
	path := filepath.Join(dir, keyringFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read keyring %q: %w", path, err)
	}
	return parseKeyring(b)
}

func parseKeyring(b []byte) ([][]byte, error) {
	var enc []string
	if err := json.Unmarshal(b, &enc); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if len(enc) == 0 {
		return nil, errors.New("keyring is empty")
	}
	var keys [][]byte
	for _, e := range enc {
		k, err := base64.StdEncoding.DecodeString(e)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return nil, errors.New("keyring holds a key that is not 16, 24 or 32 base64 bytes")
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func encodeKeys(keys [][]byte) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = base64.StdEncoding.EncodeToString(k)
	}
	return out
}

func saveKeyring(dir string, keys [][]byte) error {
	b, _ := json.MarshalIndent(encodeKeys(keys), "", "  ")
	return identity.WriteFileAtomic(filepath.Join(dir, keyringFile), b, 0o600)
}

// forgetCluster removes the cluster files after a leave.
func forgetCluster(dir string) error {
	var errs []error
	for _, f := range []string{clusterFile, keyringFile, snapshotFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func timeFromNanos(ns int64) time.Time { return time.Unix(0, ns).UTC() }
