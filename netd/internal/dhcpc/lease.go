package dhcpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// ErrBadLease is returned for a lease file that does not parse.
var ErrBadLease = errors.New("bad lease file")

// Lease is a bound DHCP lease.
type Lease struct {
	Address  netip.Prefix  `json:"address"`
	Router   netip.Addr    `json:"router,omitzero"`
	DNS      []netip.Addr  `json:"dns,omitempty"`
	Domain   string        `json:"domain,omitempty"`
	Server   netip.Addr    `json:"server"`
	Obtained time.Time     `json:"obtained"`
	Duration time.Duration `json:"duration"`
	T1       time.Duration `json:"t1"`
	T2       time.Duration `json:"t2"`
	// Offer and ACK are the raw packets, to build renewals from.
	Offer []byte `json:"offer,omitempty"`
	ACK   []byte `json:"ack,omitempty"`
}

// Expires is when the lease ends.
func (l Lease) Expires() time.Time { return l.Obtained.Add(l.Duration) }

// RenewAt and RebindAt are T1 and T2 as times.
func (l Lease) RenewAt() time.Time  { return l.Obtained.Add(l.T1) }
func (l Lease) RebindAt() time.Time { return l.Obtained.Add(l.T2) }

// withDefaults fills T1 and T2 per RFC 2131 §4.4.5 when the server sent
// none (or nonsense).
func (l Lease) withDefaults() Lease {
	if l.T1 <= 0 || l.T1 >= l.Duration {
		l.T1 = l.Duration / 2
	}
	if l.T2 <= l.T1 || l.T2 >= l.Duration {
		l.T2 = l.Duration * 7 / 8
	}
	return l
}

// ParseLease decodes a lease file.
func ParseLease(b []byte) (Lease, error) {
	var l Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return Lease{}, fmt.Errorf("%w: %v", ErrBadLease, err)
	}
	if !l.Address.IsValid() || !l.Address.Addr().Is4() || l.Duration <= 0 || !l.Server.IsValid() {
		return Lease{}, fmt.Errorf("%w: missing address, server or duration", ErrBadLease)
	}
	return l.withDefaults(), nil
}

// LoadLease reads a lease file; a missing file is (Lease{}, false, nil).
func LoadLease(path string) (Lease, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Lease{}, false, nil
	}
	if err != nil {
		return Lease{}, false, fmt.Errorf("read lease %q: %w", path, err)
	}
	l, err := ParseLease(b)
	if err != nil {
		return Lease{}, false, fmt.Errorf("read lease %q: %w", path, err)
	}
	return l, true, nil
}

// SaveLease writes a lease file atomically (temp file, fsync, rename).
func SaveLease(path string, l Lease) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, b, 0o600)
}

// WriteFileAtomic writes b to path through a temp file in the same
// directory, fsynced and renamed over path.
func WriteFileAtomic(path string, b []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make directory %q: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %q: %w", path, err)
	}
	return nil
}
