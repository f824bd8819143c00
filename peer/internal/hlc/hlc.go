package hlc

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"
)

// DefaultMaxOffset is the largest lead over local physical time that a
// remote timestamp may have (CockroachDB uses the same bound).
const DefaultMaxOffset = 500 * time.Millisecond

// EncodedLen is the size of an encoded Timestamp.
const EncodedLen = 12

// Timestamp is a point of hybrid logical time. The zero value is before
// every timestamp a Clock issues.
type Timestamp struct {
	Wall    int64  `json:"wall"`    // physical milliseconds since the Unix epoch
	Logical uint32 `json:"logical"` // counter among equal Wall values
}

// Compare returns -1, 0 or +1 as t is before, equal to or after u.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.Wall < u.Wall:
		return -1
	case t.Wall > u.Wall:
		return 1
	case t.Logical < u.Logical:
		return -1
	case t.Logical > u.Logical:
		return 1
	}
	return 0
}

// IsZero reports whether t is the zero timestamp.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// Time returns the physical part of t.
func (t Timestamp) Time() time.Time { return time.UnixMilli(t.Wall).UTC() }

func (t Timestamp) String() string {
	return fmt.Sprintf("%s+%d", t.Time().Format("2006-01-02T15:04:05.000Z"), t.Logical)
}

// AppendBinary appends the 12-byte encoding of t to b.
func (t Timestamp) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Wall))
	return binary.BigEndian.AppendUint32(b, t.Logical), nil
}

// Decode decodes the first EncodedLen bytes of b.
func Decode(b []byte) (Timestamp, error) {
	if len(b) < EncodedLen {
		return Timestamp{}, fmt.Errorf("%w: %d bytes, want %d", ErrBadTimestamp, len(b), EncodedLen)
	}
	w := binary.BigEndian.Uint64(b)
	if w > math.MaxInt64 {
		return Timestamp{}, fmt.Errorf("%w: wall time out of range", ErrBadTimestamp)
	}
	return Timestamp{Wall: int64(w), Logical: binary.BigEndian.Uint32(b[8:])}, nil
}

// Clock issues timestamps. Create it with NewClock.
type Clock struct {
	now       func() time.Time
	maxOffset time.Duration

	mu   sync.Mutex
	last Timestamp
}

// NewClock returns a clock reading physical time from now (time.Now when
// nil) that refuses remote timestamps more than maxOffset ahead
// (DefaultMaxOffset when zero or negative).
func NewClock(now func() time.Time, maxOffset time.Duration) *Clock {
	if now == nil {
		now = time.Now
	}
	if maxOffset <= 0 {
		maxOffset = DefaultMaxOffset
	}
	return &Clock{now: now, maxOffset: maxOffset}
}

// MaxOffset returns the bound on a remote timestamp's lead.
func (c *Clock) MaxOffset() time.Duration { return c.maxOffset }

// Now returns a timestamp above every timestamp issued or observed before.
func (c *Clock) Now() Timestamp {
	pt := c.now().UnixMilli()
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt > c.last.Wall {
		c.last = Timestamp{Wall: pt}
	} else if c.last.Logical == math.MaxUint32 {
		c.last = Timestamp{Wall: c.last.Wall + 1}
	} else {
		c.last.Logical++
	}
	return c.last
}

// Check returns ErrClockOffset (wrapped, with the lead) when t is more than
// MaxOffset ahead of the physical clock. It changes nothing.
func (c *Clock) Check(t Timestamp) error {
	pt := c.now().UnixMilli()
	if lead := t.Wall - pt; lead > c.maxOffset.Milliseconds() {
		return fmt.Errorf("%w: timestamp %s is %s ahead of local time, max offset %s",
			ErrClockOffset, t, time.Duration(lead)*time.Millisecond, c.maxOffset)
	}
	return nil
}

// Update records a timestamp received from a peer so that later timestamps
// from Now are above it. A timestamp beyond the offset bound is refused
// with ErrClockOffset and changes nothing.
func (c *Clock) Update(t Timestamp) error {
	if err := c.Check(t); err != nil {
		return err
	}
	c.Observe(t)
	return nil
}

// Observe records t without the offset check. Use it only for timestamps
// this node issued itself before a restart (read back from its own disk).
func (c *Clock) Observe(t Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Compare(c.last) > 0 {
		c.last = t
	}
}
