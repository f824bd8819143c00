package proccluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// State is what Up built, kept in D/state.json.
type State struct {
	Dir       string      `json:"dir"`
	Tag       string      `json:"tag"`
	ShoalBin  string      `json:"shoal_bin"`
	HelperBin string      `json:"helper_bin"`
	Daemons   []string    `json:"daemons"` // in start order
	Disks     int         `json:"disks"`
	DiskSize  int64       `json:"disk_size"`
	DiskMode  DiskMode    `json:"disk_mode,omitempty"` // "" (older states) means fuse
	DaemonEnv []string    `json:"daemon_env,omitempty"`
	StaticIP  bool        `json:"static_ip"` // the harness assigns addresses (no netd)
	ReadyTO   string      `json:"ready_timeout"`
	Nodes     []NodeState `json:"nodes"`
	Partition [][]string  `json:"partition,omitempty"` // the two sides, if partitioned
}

// NodeState is one node.
type NodeState struct {
	Name  string `json:"name"`  // "node1"
	Index int    `json:"index"` // 1-based
	IPv4  string `json:"ipv4,omitempty"`
	IPv6  string `json:"ipv6,omitempty"`
}

// TagFor is the short tag of the cluster in dir: the first 6 hex digits of
// the SHA-256 of its absolute path.
func TagFor(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(sum[:])[:6], nil
}

// nodeAddrs returns the static addresses of node index i.
func nodeAddrs(i int) (v4, v6 string) {
	return fmt.Sprintf("10.88.0.%d", 10+i), fmt.Sprintf("fd53:686f:616c::%d", 10+i)
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

func loadState(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNotUp)
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s (run shoal-qa down to clean up): %w", statePath(dir), err)
	}
	return &s, nil
}

func (s *State) save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(s.Dir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(s.Dir))
}

func (s *State) node(name string) (*NodeState, error) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i], nil
		}
	}
	var names []string
	for _, n := range s.Nodes {
		names = append(names, n.Name)
	}
	return nil, fmt.Errorf("%q (nodes: %v): %w", name, names, ErrNoSuchNode)
}
