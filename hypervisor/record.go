package hypervisor

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
)

// RecordPrefix is the cluster-state prefix of VM records: vm/<name>.
const RecordPrefix = "vm/"

// Field names of a vm/<name> record. Every field is a register. Scalars
// are plain text (strings as they are, numbers in decimal), lists and
// objects are JSON. The desired fields are written by whoever edits the
// VM (CLI, API); the status fields only by the node running it.
const (
	FieldID           = "id"            // stable VM ID, 32 hex digits, set once at create
	FieldDesired      = "desired"       // running | stopped
	FieldCPUs         = "cpus"          // vCPUs
	FieldMemoryMiB    = "memory_mib"    // RAM in MiB
	FieldDisks        = "disks"         // JSON [{"vsd": "web1-0"}], boot disk first
	FieldCDROM        = "cdrom"         // image name, "" for none
	FieldNICs         = "nics"          // JSON [{"network": "default", "mac": "02:…"}]
	FieldAntiAffinity = "anti_affinity" // group name: VMs of a group avoid sharing a node
	FieldNode         = "node"          // status: ID of the node running the VM
	FieldEpoch        = "epoch"         // status: claim epoch the VM runs under
	FieldStatus       = "status"        // status: running | paused | stopped | crashed | migrating
	FieldStatusDetail = "status_detail" // status: why (crash reason, last error), "" when none
	FieldMigration    = "migration"     // status: JSON MigrationStatus of the current or last migration, "" for none
)

// Fields of a live migration (migrate.go) and of the guest's identity
// as its agent reports it (a live migration keeps both).
const (
	FieldMigrate         = "migrate"          // desired: JSON MigrateRequest, "" for none; the source clears it when done
	FieldMigrateIncoming = "migrate_incoming" // status of the destination: JSON MigrateIncoming
	FieldGuestBootID     = "guest_boot_id"    // status: the guest's boot ID (agent hello), with agent_seen
	FieldGuestUptimeMS   = "guest_uptime_ms"  // status: guest uptime in ms (agent heartbeat), with agent_seen
)

// Desired is the state the user wants a VM in.
type Desired string

const (
	DesiredRunning Desired = "running"
	DesiredStopped Desired = "stopped"
)

// VMDisk is one disk of a VM: a scribe VSD by name (see disks.go).
type VMDisk struct {
	VSD string `json:"vsd"`
	// Owned: the VSD was created with the VM (`vm create --disk SIZE`);
	// `vm rm` removes it too unless --keep-disks.
	Owned bool `json:"owned,omitempty"`
	// ReadOnly attaches it read-only (an image: `--disk image:NAME`).
	ReadOnly bool `json:"read_only,omitempty"`
	// Format is what the VSD holds: "" or "raw", or "qcow2" (an uploaded
	// qcow2 image, opened by QEMU's qcow2 driver over NBD).
	Format string `json:"format,omitempty"`
}

// VMNIC is one NIC: the network it joins and its MAC, fixed at create so
// it stays stable for the VM's life on every node.
type VMNIC struct {
	Network string `json:"network"`
	MAC     string `json:"mac"`
}

// MigrationStatus is the progress of a live migration, written by the
// source node.
type MigrationStatus struct {
	ID          string `json:"id,omitempty"` // the MigrateRequest's ID
	To          string `json:"to"`           // destination node ID
	Phase       string `json:"phase"`        // MigrationWaiting, QEMU's migration status, then MigrationCompleted or MigrationFailed
	Transferred uint64 `json:"transferred"`
	Remaining   uint64 `json:"remaining"`
	Total       uint64 `json:"total"`
	DowntimeMS  int64  `json:"downtime_ms,omitempty"` // QEMU's figure, once completed
	TotalMS     int64  `json:"total_ms,omitempty"`    // QEMU's figure: from start to completion
	Postcopy    bool   `json:"postcopy,omitempty"`
	Error       string `json:"error,omitempty"` // why it failed (MigrationFailed)
}

// VMRecord is a decoded vm/<name> record.
type VMRecord struct {
	Name         string
	ID           string
	Desired      Desired
	CPUs         int
	MemoryMiB    int
	Disks        []VMDisk
	CDROM        string
	NICs         []VMNIC
	AntiAffinity string

	Node         string
	Epoch        uint64
	Status       string
	StatusDetail string
	Migration    *MigrationStatus
}

var (
	vmNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	vmIDPattern   = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// Limits of a VM record.
const (
	MaxCPUs      = 255
	MaxMemoryMiB = 4 << 20
	MinMemoryMiB = 16
	maxDevices   = 16
)

// DesiredFields encodes the user-owned fields.
func (r VMRecord) DesiredFields() map[string]string {
	return map[string]string{
		FieldID:           r.ID,
		FieldDesired:      string(r.Desired),
		FieldCPUs:         strconv.Itoa(r.CPUs),
		FieldMemoryMiB:    strconv.Itoa(r.MemoryMiB),
		FieldDisks:        mustJSON(orEmpty(r.Disks)),
		FieldCDROM:        r.CDROM,
		FieldNICs:         mustJSON(orEmpty(r.NICs)),
		FieldAntiAffinity: r.AntiAffinity,
	}
}

// StatusFields encodes the fields the running node owns.
func (r VMRecord) StatusFields() map[string]string {
	f := map[string]string{
		FieldNode:         r.Node,
		FieldEpoch:        "",
		FieldStatus:       r.Status,
		FieldStatusDetail: r.StatusDetail,
		FieldMigration:    "",
	}
	if r.Epoch != 0 {
		f[FieldEpoch] = strconv.FormatUint(r.Epoch, 10)
	}
	if r.Migration != nil {
		f[FieldMigration] = mustJSON(r.Migration)
	}
	return f
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own plain structs are marshalled
	}
	return string(b)
}

// ParseVMRecord decodes and checks the record under key (vm/<name>).
// Absent status fields are zero; absent desired fields are an error,
// except cdrom, anti_affinity, disks and nics (none).
func ParseVMRecord(key string, fields map[string]string) (VMRecord, error) {
	bad := func(format string, args ...any) (VMRecord, error) {
		return VMRecord{}, fmt.Errorf("%w %s: %s", ErrBadRecord, key, fmt.Sprintf(format, args...))
	}
	name, ok := strings.CutPrefix(key, RecordPrefix)
	if !ok || !vmNamePattern.MatchString(name) {
		return bad("name must be 1-63 of a-z, 0-9 and '-', starting with a letter or digit")
	}
	r := VMRecord{Name: name, ID: fields[FieldID], Desired: Desired(fields[FieldDesired]),
		CDROM: fields[FieldCDROM], AntiAffinity: fields[FieldAntiAffinity],
		Node: fields[FieldNode], Status: fields[FieldStatus], StatusDetail: fields[FieldStatusDetail]}
	if !vmIDPattern.MatchString(r.ID) {
		return bad("id %q is not 32 lowercase hex digits", r.ID)
	}
	if r.Desired != DesiredRunning && r.Desired != DesiredStopped {
		return bad("desired %q is not running or stopped", r.Desired)
	}
	var err error
	if r.CPUs, err = strconv.Atoi(fields[FieldCPUs]); err != nil || r.CPUs < 1 || r.CPUs > MaxCPUs {
		return bad("cpus %q is not 1-%d", fields[FieldCPUs], MaxCPUs)
	}
	if r.MemoryMiB, err = strconv.Atoi(fields[FieldMemoryMiB]); err != nil || r.MemoryMiB < MinMemoryMiB || r.MemoryMiB > MaxMemoryMiB {
		return bad("memory_mib %q is not %d-%d", fields[FieldMemoryMiB], MinMemoryMiB, MaxMemoryMiB)
	}
	if v := fields[FieldDisks]; v != "" {
		if err := json.Unmarshal([]byte(v), &r.Disks); err != nil {
			return bad("disks: %v", err)
		}
	}
	r.Disks = orEmpty(r.Disks)
	if len(r.Disks) > maxDevices {
		return bad("%d disks, at most %d", len(r.Disks), maxDevices)
	}
	for i, d := range r.Disks {
		if d.VSD == "" {
			return bad("disk %d names no vsd", i)
		}
		if d.Format != "" && d.Format != FormatRaw && d.Format != FormatQCOW2 {
			return bad("disk %d: format %q is not raw or qcow2", i, d.Format)
		}
	}
	if v := fields[FieldNICs]; v != "" {
		if err := json.Unmarshal([]byte(v), &r.NICs); err != nil {
			return bad("nics: %v", err)
		}
	}
	r.NICs = orEmpty(r.NICs)
	if len(r.NICs) > maxDevices {
		return bad("%d nics, at most %d", len(r.NICs), maxDevices)
	}
	for i, n := range r.NICs {
		hw, err := net.ParseMAC(n.MAC)
		if n.Network == "" || err != nil || len(hw) != 6 || hw[0]&1 != 0 {
			return bad("nic %d: needs a network and a unicast MAC, has %q and %q", i, n.Network, n.MAC)
		}
	}
	if v := fields[FieldEpoch]; v != "" {
		if r.Epoch, err = strconv.ParseUint(v, 10, 64); err != nil {
			return bad("epoch %q is not a number", v)
		}
	}
	if v := fields[FieldMigration]; v != "" {
		r.Migration = new(MigrationStatus)
		if err := json.Unmarshal([]byte(v), r.Migration); err != nil {
			return bad("migration: %v", err)
		}
	}
	return r, nil
}
