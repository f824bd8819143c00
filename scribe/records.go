package scribe

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

// Record key prefixes in the cluster state.
const (
	// VSDPrefix: "vsd/NAME", one VSD (VSDRecord); written by `shoal vsd`.
	VSDPrefix = "vsd/"
	// VSDStatusPrefix: "vsd-status/NAME", what the VSD's owner last
	// published about it (VSDStatus).
	VSDStatusPrefix = "vsd-status/"
	// NodePrefix: "scribe/NODE-ID", one node's chunk service and disks
	// (NodeRecord).
	NodePrefix = "scribe/"
	// DeletedPrefix: "vsd-deleted/ID", a removed VSD (fields name,
	// deleted) whose chunks every node frees from its disks.
	DeletedPrefix = "vsd-deleted/"
)

// DeletedKey is the record `shoal vsd rm` writes for a removed VSD.
func DeletedKey(id chunkstore.ID) string { return DeletedPrefix + id.String() }

// ClaimResource is the claim a node holds while it writes VSD name.
func ClaimResource(name string) string { return "vsd/" + name }

// Replica counts a VSD may have.
const (
	MinReplicas     = 2
	MaxReplicas     = 3
	DefaultReplicas = 2
)

// VSDRecord is a VSD as `shoal vsd create` records it.
type VSDRecord struct {
	Name     string
	ID       chunkstore.ID
	Size     int64
	Replicas int
	Created  time.Time
	// ReadOnly (field "readonly" = "1"): the VSD's content is final (an
	// uploaded image). Any number of nodes open it at once, without a
	// claim and without fencing, and writes are refused (EPERM). Set it
	// only once the writer has flushed and closed the VSD.
	ReadOnly bool
}

// ReadOnlyField is the "vsd/NAME" field that marks a VSD read-only when
// "1" ("" or "0": writable).
const ReadOnlyField = "readonly"

// Fields encodes the record as state register fields (plain strings).
func (r VSDRecord) Fields() map[string]string {
	f := map[string]string{
		"id":       r.ID.String(),
		"size":     strconv.FormatInt(r.Size, 10),
		"replicas": strconv.Itoa(r.Replicas),
		"created":  r.Created.UTC().Format(time.RFC3339),
	}
	if r.ReadOnly {
		f[ReadOnlyField] = "1"
	}
	return f
}

// ParseVSD decodes a "vsd/NAME" record.
func ParseVSD(rec client.StateRecord) (VSDRecord, error) {
	name, ok := strings.CutPrefix(rec.Key, VSDPrefix)
	if !ok || ValidName(name) != nil {
		return VSDRecord{}, fmt.Errorf("%w: key %q is not vsd/NAME", ErrBadRecord, rec.Key)
	}
	r := VSDRecord{Name: name}
	id, err := parseID(rec.Fields["id"].Value)
	if err != nil {
		return VSDRecord{}, fmt.Errorf("%w: %s: id: %v", ErrBadRecord, rec.Key, err)
	}
	r.ID = id
	if r.Size, err = strconv.ParseInt(rec.Fields["size"].Value, 10, 64); err != nil || r.Size <= 0 {
		return VSDRecord{}, fmt.Errorf("%w: %s: size %q", ErrBadRecord, rec.Key, rec.Fields["size"].Value)
	}
	if r.Replicas, err = strconv.Atoi(rec.Fields["replicas"].Value); err != nil || r.Replicas < 1 || r.Replicas > MaxReplicas {
		return VSDRecord{}, fmt.Errorf("%w: %s: replicas %q", ErrBadRecord, rec.Key, rec.Fields["replicas"].Value)
	}
	r.Created, _ = time.Parse(time.RFC3339, rec.Fields["created"].Value)
	switch ro := rec.Fields[ReadOnlyField].Value; ro {
	case "1":
		r.ReadOnly = true
	case "", "0":
	default:
		return VSDRecord{}, fmt.Errorf("%w: %s: %s %q: want 1 or nothing", ErrBadRecord, rec.Key, ReadOnlyField, ro)
	}
	return r, nil
}

// VSDStatus is what the owner of an open VSD publishes in
// "vsd-status/NAME" (every few seconds while it changes, and when it
// closes the VSD).
type VSDStatus struct {
	Owner string `json:"owner"` // node ID; empty once closed
	Epoch uint64 `json:"epoch"`
	// Allocated is the bytes written, summed over replicas.
	Allocated int64 `json:"allocated"`
	Extents   int   `json:"extents"`
	// Degraded counts extents with fewer replicas than configured;
	// Unavailable those with no reachable up-to-date copy.
	Degraded    int       `json:"degraded"`
	Unavailable int       `json:"unavailable"`
	Updated     time.Time `json:"updated"`
}

// Fields encodes the status as state register fields.
func (s VSDStatus) Fields() map[string]string {
	return map[string]string{
		"owner":       s.Owner,
		"epoch":       strconv.FormatUint(s.Epoch, 10),
		"allocated":   strconv.FormatInt(s.Allocated, 10),
		"extents":     strconv.Itoa(s.Extents),
		"degraded":    strconv.Itoa(s.Degraded),
		"unavailable": strconv.Itoa(s.Unavailable),
		"updated":     s.Updated.UTC().Format(time.RFC3339Nano),
	}
}

// ParseVSDStatus decodes a "vsd-status/NAME" record; missing fields are
// zero.
func ParseVSDStatus(rec client.StateRecord) VSDStatus {
	f := func(k string) string { return rec.Fields[k].Value }
	var s VSDStatus
	s.Owner = f("owner")
	s.Epoch, _ = strconv.ParseUint(f("epoch"), 10, 64)
	s.Allocated, _ = strconv.ParseInt(f("allocated"), 10, 64)
	s.Extents, _ = strconv.Atoi(f("extents"))
	s.Degraded, _ = strconv.Atoi(f("degraded"))
	s.Unavailable, _ = strconv.Atoi(f("unavailable"))
	s.Updated, _ = time.Parse(time.RFC3339Nano, f("updated"))
	return s
}

// NodeRecord is one node's scribe as published in "scribe/NODE-ID".
type NodeRecord struct {
	Node  string     `json:"-"`
	Addr  string     `json:"addr"` // chunk service, host:port on the backplane
	Disks []DiskInfo `json:"disks"`
}

// DiskInfo is one data disk of a node.
type DiskInfo struct {
	ID   chunkstore.ID `json:"id"`
	Path string        `json:"path"`
	Size int64         `json:"size"`
	Free int64         `json:"free"`
}

// Fields encodes the record as state register fields.
func (r NodeRecord) Fields() map[string]string {
	b, _ := json.Marshal(r.Disks)
	return map[string]string{"addr": r.Addr, "disks": string(b)}
}

// ParseNode decodes a "scribe/NODE-ID" record.
func ParseNode(rec client.StateRecord) (NodeRecord, error) {
	node, ok := strings.CutPrefix(rec.Key, NodePrefix)
	if !ok || node == "" {
		return NodeRecord{}, fmt.Errorf("%w: key %q is not scribe/NODE-ID", ErrBadRecord, rec.Key)
	}
	r := NodeRecord{Node: node, Addr: rec.Fields["addr"].Value}
	if d := rec.Fields["disks"].Value; d != "" {
		if err := json.Unmarshal([]byte(d), &r.Disks); err != nil {
			return NodeRecord{}, fmt.Errorf("%w: %s: disks: %v", ErrBadRecord, rec.Key, err)
		}
	}
	return r, nil
}

// ValidName checks a VSD name: 1 to 63 of [a-z0-9._-], starting with a
// letter or digit (it is an NBD export name and part of a state key).
func ValidName(name string) error {
	if len(name) == 0 || len(name) > 63 {
		return fmt.Errorf("%w: %q: want 1 to 63 characters", ErrBadName, name)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (i > 0 && (c == '.' || c == '_' || c == '-'))
		if !ok {
			return fmt.Errorf("%w: %q: use lowercase letters, digits, '.', '_' and '-', starting with a letter or digit", ErrBadName, name)
		}
	}
	return nil
}

// ParseSize reads a size such as 4G, 512M, 1T, 10240K or 1048576 (bytes);
// suffixes are binary (K = 1024) and may end in "iB" or "B" (4GiB, 4GB).
// The result is positive and a multiple of 4096.
func ParseSize(s string) (int64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if strings.HasSuffix(u, "IB") {
		u = u[:len(u)-2]
	} else if strings.HasSuffix(u, "B") {
		u = u[:len(u)-1]
	}
	mult := int64(1)
	if n := len(u); n > 0 {
		switch u[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		case 'P':
			mult = 1 << 50
		}
		if mult != 1 {
			u = u[:n-1]
		}
	}
	v, err := strconv.ParseFloat(u, 64)
	if err != nil || u == "" || strings.ContainsAny(u, "eEx+-_") || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%w: %q: want a number with an optional K, M, G or T suffix, like 4G or 512M", ErrBadSize, s)
	}
	f := v * float64(mult)
	if f <= 0 || f > float64(MaxSize) {
		return 0, fmt.Errorf("%w: %q: want more than 0 and at most 1P", ErrBadSize, s)
	}
	n := int64(f)
	if n%4096 != 0 {
		return 0, fmt.Errorf("%w: %q is %d bytes, not a multiple of 4096", ErrBadSize, s, n)
	}
	return n, nil
}

// MaxSize is the largest VSD: 1 PiB.
const MaxSize = int64(1) << 50

// FormatSize prints bytes with a binary suffix: 4G, 512M, 1.5G, 4096.
func FormatSize(n int64) string {
	for _, u := range []struct {
		s string
		v int64
	}{{"P", 1 << 50}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.v {
			if n%u.v == 0 {
				return strconv.FormatInt(n/u.v, 10) + u.s
			}
			return strconv.FormatFloat(float64(n)/float64(u.v), 'f', 1, 64) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}

// NewVSDID returns a random VSD ID.
func NewVSDID() chunkstore.ID { return chunkstore.NewID() }

// parseID decodes 32 hex digits.
func parseID(s string) (chunkstore.ID, error) {
	var id chunkstore.ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%q is not 32 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

// idOf turns a node or cluster ID (32 hex digits) into a chunkstore.ID;
// anything else is hashed, so the mapping is stable either way.
func idOf(s string) chunkstore.ID {
	if id, err := parseID(s); err == nil {
		return id
	}
	h := sha256.Sum256([]byte(s))
	var id chunkstore.ID
	copy(id[:], h[:])
	return id
}
