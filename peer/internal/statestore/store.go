package statestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
)

// Config configures a Store.
type Config struct {
	// Path of the bbolt file. Required.
	Path string
	// NodeID of this node. Required; at most 100 bytes, no '#'.
	NodeID string
	// Clock stamps local writes and bounds remote ones. Nil: a clock on Now
	// with hlc.DefaultMaxOffset.
	Clock *hlc.Clock
	// Now reads physical time for acknowledgements, the rejoin horizon and
	// events. Nil: time.Now.
	Now func() time.Time
	// Logger for operator-relevant events. Nil: slog.Default().
	Logger *slog.Logger
	// Schemas gives the schema version recorded by local writes of each
	// record type. Types not listed write version 0.
	Schemas map[string]crdt.Schema
	// LogRetain is how many changes of each origin the log keeps for peers
	// that catch up; a peer further behind gets a snapshot. Zero: 10000.
	LogRetain int
	// RevRetain is how many revisions watchers can resume from. Zero: 10000.
	RevRetain int
	// RejoinHorizon is how long a member may stay silent before it stops
	// holding back tombstone collection and must resync from a snapshot.
	// Zero: 7 days.
	RejoinHorizon time.Duration
	// NoSync skips fsync on commit. Only for tests: a crash loses writes.
	NoSync bool
}

// DefaultConfig returns a Config with every default filled in except Path
// and NodeID.
func DefaultConfig() Config {
	return Config{LogRetain: 10000, RevRetain: 10000, RejoinHorizon: 7 * 24 * time.Hour}
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.Path == "" {
		return errors.New("state store config: path is required")
	}
	if c.NodeID == "" || len(c.NodeID) > 100 {
		return fmt.Errorf("state store config: node ID %q must be 1 to 100 bytes", c.NodeID)
	}
	for _, r := range c.NodeID {
		if r == '#' || r < 0x21 || r > 0x7e {
			return fmt.Errorf("state store config: node ID %q must be printable ASCII without '#' or spaces", c.NodeID)
		}
	}
	if c.LogRetain < 0 || c.RevRetain < 0 || c.RejoinHorizon < 0 {
		return errors.New("state store config: retention and horizon must not be negative")
	}
	for t, s := range c.Schemas {
		if s.Type != t {
			return fmt.Errorf("state store config: schema for %q has type %q", t, s.Type)
		}
		if err := s.Validate(); err != nil {
			return fmt.Errorf("state store config: %w", err)
		}
	}
	return nil
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Clock == nil {
		c.Clock = hlc.NewClock(c.Now, 0)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.LogRetain == 0 {
		c.LogRetain = d.LogRetain
	}
	if c.RevRetain == 0 {
		c.RevRetain = d.RevRetain
	}
	if c.RejoinHorizon == 0 {
		c.RejoinHorizon = d.RejoinHorizon
	}
}

var (
	bMeta    = []byte("meta")
	bRecords = []byte("records")
	bVV      = []byte("vv")
	bFloor   = []byte("floor")
	bLog     = []byte("log")
	bRevs    = []byte("revs")
	bTombs   = []byte("tombs")
	bAcks    = []byte("acks")
	bResync  = []byte("resync")
	bMembers = []byte("members")

	kIncarnation = []byte("incarnation")
	kRev         = []byte("rev")
	kRevFloor    = []byte("revfloor")
	kHLC         = []byte("hlc")
	kPendingVV   = []byte("pendingvv")
	kResetting   = []byte("resetting")
)

// Store is one node's replica of the cluster state.
type Store struct {
	cfg Config
	db  *bolt.DB

	mu     sync.Mutex
	origin string
	notify chan struct{} // closed and replaced after every commit that changed something
	closed bool
}

// Open opens or creates the store at cfg.Path.
func Open(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fill()
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: cfg.NoSync, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("open state store %q: %w", cfg.Path, err)
	}
	s := &Store{cfg: cfg, db: db, notify: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bRecords, bVV, bFloor, bLog, bRevs, bTombs, bAcks, bResync, bMembers} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		if m.Get(kIncarnation) == nil {
			if err := m.Put(kIncarnation, u64(1)); err != nil {
				return err
			}
		}
		s.origin = originOf(cfg.NodeID, getU64(m.Get(kIncarnation)))
		if b := m.Get(kHLC); b != nil {
			ts, err := hlc.Decode(b)
			if err != nil {
				return fmt.Errorf("read saved clock: %w", err)
			}
			cfg.Clock.Observe(ts)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state store %q: %w", cfg.Path, err)
	}
	return s, nil
}

func originOf(node string, inc uint64) string { return node + "#" + strconv.FormatUint(inc, 10) }

// NodeOf returns the node ID of an origin ("n1" for "n1#3").
func NodeOf(origin string) string {
	n, _ := splitOrigin(origin)
	return n
}

// splitOrigin returns the node ID and incarnation of an origin
// (incarnation 0 when it has none).
func splitOrigin(origin string) (string, uint64) {
	for i := len(origin) - 1; i >= 0; i-- {
		if origin[i] == '#' {
			inc, err := strconv.ParseUint(origin[i+1:], 10, 64)
			if err != nil {
				return origin, 0
			}
			return origin[:i], inc
		}
	}
	return origin, 0
}

// Close closes the store. Blocked watchers return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.notify)
	}
	s.mu.Unlock()
	return s.db.Close()
}

// Origin returns the origin this node writes its changes under: its node
// ID and incarnation, which changes when the node resets from a snapshot.
func (s *Store) Origin() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.origin
}

// NodeID returns the node ID.
func (s *Store) NodeID() string { return s.cfg.NodeID }

// Clock returns the store's hybrid logical clock.
func (s *Store) Clock() *hlc.Clock { return s.cfg.Clock }

// Changed returns a channel closed at the next commit that changes state.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

func (s *Store) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		close(s.notify)
		s.notify = make(chan struct{})
	}
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func readVV(tx *bolt.Tx) crdt.VersionVector {
	v := crdt.VersionVector{}
	tx.Bucket(bVV).ForEach(func(k, b []byte) error {
		v[string(k)] = getU64(b)
		return nil
	})
	return v
}

// VV returns the version vector of the changes applied here.
func (s *Store) VV() (crdt.VersionVector, error) {
	var v crdt.VersionVector
	err := s.db.View(func(tx *bolt.Tx) error { v = readVV(tx); return nil })
	return v, err
}

// Revision returns the latest local revision.
func (s *Store) Revision() (uint64, error) {
	var r uint64
	err := s.db.View(func(tx *bolt.Tx) error { r = getU64(tx.Bucket(bMeta).Get(kRev)); return nil })
	return r, err
}
