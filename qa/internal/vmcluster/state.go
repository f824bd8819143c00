package vmcluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// EnvTag is set in the environment of every process the harness starts
// (QEMU, the switch daemon, dnsmasq), to the cluster's tag: Down finds
// them by it.
const EnvTag = "SHOAL_QA_VMCLUSTER"

// netnsPrefix names the harness's network namespaces: shv-TAG-dhcp.
const netnsPrefix = "shv-"

// State is what Up writes to Dir/state.json for later invocations.
type State struct {
	Dir      string      `json:"dir"`
	Tag      string      `json:"tag"`
	Image    string      `json:"image"` // the private copy in Dir
	Accel    string      `json:"accel"`
	Slots    int         `json:"slots"`
	DHCP     bool        `json:"dhcp"`
	APIPort  int         `json:"api_port"` // 0: no forward
	Opts     StateOpts   `json:"opts"`
	Nodes    []NodeState `json:"nodes"`
	Switchd  int         `json:"switchd_pid"`
	Subnet   string      `json:"subnet"` // the DHCP segment, e.g. 10.77.0.0/24
	Backhost string      `json:"backplane_host"`
}

// StateOpts are the options later AddNode calls reuse.
type StateOpts struct {
	DataDisks    int    `json:"data_disks"`
	DataDiskSize int64  `json:"data_disk_size"`
	BootDiskSize int64  `json:"boot_disk_size"`
	MemMB        int    `json:"mem_mb"`
	QEMU         string `json:"qemu"`
	QEMUImg      string `json:"qemu_img"`
	OVMFCode     string `json:"ovmf_code"`
	OVMFVars     string `json:"ovmf_vars"`
}

// NodeState is one node.
type NodeState struct {
	Name string   `json:"name"`          // node1, node2, …
	Slot int      `json:"slot"`          // 1-based switch slot
	MACs []string `json:"macs"`          // one per NIC
	Cut  []bool   `json:"cut,omitempty"` // per NIC: cable pulled (QMP set_link)
}

// TagFor derives a cluster's tag from its absolute directory.
func TagFor(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(h[:3]), nil
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

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

func loadState(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoCluster
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s (`shoal-qa vm down` still cleans up): %w", statePath(dir), err)
	}
	return &s, nil
}

// node finds a node by name.
func (s *State) node(name string) (*NodeState, error) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i], nil
		}
	}
	return nil, fmt.Errorf("%w %q (nodes: %v)", ErrUnknownNode, name, s.names())
}

func (s *State) names() []string {
	var out []string
	for _, n := range s.Nodes {
		out = append(out, n.Name)
	}
	return out
}

// Paths of a node's files.
func nodeDir(dir, name string) string { return filepath.Join(dir, "nodes", name) }

// portName is the switch port of a node's NIC k.
func portName(slot, k int) string { return fmt.Sprintf("s%d-%d", slot, k) }

// macFor is the MAC of NIC k of the node in slot (locally administered,
// QEMU's 52:54:00 prefix).
func macFor(slot, k int) string { return fmt.Sprintf("52:54:00:5a:%02x:%02x", slot, k) }
