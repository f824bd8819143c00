package claim

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Store is an acceptor's durable memory. Save must be durable (fsynced)
// when it returns: the acceptor answers only after it.
type Store interface {
	// Load returns the record of resource, or the zero Record if none.
	Load(resource string) (Record, error)
	// Save durably replaces the record of resource.
	Save(resource string, r Record) error
	// Resources lists the resources with a record, sorted.
	Resources() ([]string, error)
	// Check verifies every stored record.
	Check() error
}

// MemStore is a Store in memory: durable for as long as the value lives.
// The simulation keeps one per acceptor across simulated crashes, which
// models a disk that never loses a completed write (what fsync gives).
type MemStore struct {
	mu   sync.Mutex
	recs map[string]Record
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore { return &MemStore{recs: map[string]Record{}} }

// Load implements Store.
func (m *MemStore) Load(resource string) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return cloneRecord(m.recs[resource]), nil
}

// Save implements Store.
func (m *MemStore) Save(resource string, r Record) error {
	if err := r.Validate(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[resource] = cloneRecord(r)
	return nil
}

// Resources implements Store.
func (m *MemStore) Resources() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.recs)), nil
}

// Check implements Store.
func (m *MemStore) Check() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for res, r := range m.recs {
		if err := r.Validate(); err != nil {
			return fmt.Errorf("%w: resource %q: %v", ErrCorrupt, res, err)
		}
	}
	return nil
}

func cloneRecord(r Record) Record {
	if r.Accepted != nil {
		a := *r.Accepted
		r.Accepted = &a
	}
	return r
}
