package claim

import (
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketClaims = []byte("claims")
	bucketMeta   = []byte("meta")
	keyFormat    = []byte("format")
	formatV1     = []byte("claim-v1")
)

// BoltStore is the Store of a node: one bbolt file, one key per resource
// in bucket "claims" holding the JSON Record. Every Save is a bbolt
// transaction committed with fsync (bbolt's default, never disabled here).
type BoltStore struct {
	db   *bolt.DB
	path string
}

// OpenBolt opens or creates the claim store at path.
func OpenBolt(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open claim store %q: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketClaims); err != nil {
			return err
		}
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		switch f := m.Get(keyFormat); {
		case f == nil:
			return m.Put(keyFormat, formatV1)
		case string(f) != string(formatV1):
			return fmt.Errorf("%w: format %q, this build reads %q", ErrCorrupt, f, formatV1)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise claim store %q: %w", path, err)
	}
	return &BoltStore{db: db, path: path}, nil
}

// Close closes the file.
func (s *BoltStore) Close() error { return s.db.Close() }

// Load implements Store.
func (s *BoltStore) Load(resource string) (Record, error) {
	var r Record
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketClaims).Get([]byte(resource))
		if v == nil {
			return nil
		}
		var err error
		r, err = DecodeRecord(v)
		if err != nil {
			return fmt.Errorf("%w: resource %q: %v", ErrCorrupt, resource, err)
		}
		return nil
	})
	if err != nil {
		return Record{}, fmt.Errorf("load claim %q from %q: %w", resource, s.path, err)
	}
	return r, nil
}

// Save implements Store: it returns once the record is on disk.
func (s *BoltStore) Save(resource string, r Record) error {
	if err := ValidResource(resource); err != nil {
		return err
	}
	b, err := Encode(r)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClaims).Put([]byte(resource), b)
	})
	if err != nil {
		return fmt.Errorf("save claim %q to %q: %w", resource, s.path, err)
	}
	return nil
}

// Resources implements Store.
func (s *BoltStore) Resources() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketClaims).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list claims in %q: %w", s.path, err)
	}
	return out, nil
}

// Check runs bbolt's page-level consistency check and validates every
// record and key.
func (s *BoltStore) Check() error {
	return s.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			return fmt.Errorf("%w: %q: %w", ErrCorrupt, s.path, errors.Join(errs...))
		}
		return tx.Bucket(bucketClaims).ForEach(func(k, v []byte) error {
			if err := ValidResource(string(k)); err != nil {
				return fmt.Errorf("%w: %q: key: %v", ErrCorrupt, s.path, err)
			}
			if _, err := DecodeRecord(v); err != nil {
				return fmt.Errorf("%w: %q: resource %q: %v", ErrCorrupt, s.path, k, err)
			}
			return nil
		})
	})
}
