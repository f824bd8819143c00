package nbd

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Config configures a Server.
type Config struct {
	// Logger receives connection-level events. Zero value: slog.Default().
	Logger *slog.Logger
	// MaxRequestBytes bounds the payload of one READ or WRITE and is
	// advertised as the maximum block size. Zero value: 32 MiB.
	MaxRequestBytes uint32
	// MaxInFlight bounds concurrent requests per connection. Zero value: 64.
	MaxInFlight int
	// MaxInFlightBytes bounds READ/WRITE payload memory per connection.
	// Zero value: 64 MiB (raised to MaxRequestBytes if smaller).
	MaxInFlightBytes int64
	// MaxOptionBytes bounds the data of one handshake option. Zero value:
	// 64 KiB.
	MaxOptionBytes uint32
	// MaxOptions bounds the number of options in one handshake. Zero
	// value: 1024.
	MaxOptions int
	// HandshakeTimeout bounds the whole handshake. Zero value: 30 s.
	HandshakeTimeout time.Duration
	// Now is the clock used for deadlines. Zero value: time.Now.
	Now func() time.Time
	// Resolver supplies exports by name when a client asks for one that
	// was not added with AddExport. Zero value: only added exports.
	Resolver Resolver
}

// Resolver opens exports on demand (scribe resolves VSD names from the
// cluster state when a client connects).
type Resolver interface {
	// Resolve opens export name for one client session. release, if not
	// nil, is called exactly once when the session ends. An error
	// matching ErrUnknownExport means there is no such export; other
	// errors are sent to the client (NBD_REP_ERR_POLICY with the
	// message) or end an EXPORT_NAME session.
	Resolve(ctx context.Context, name string) (b Backend, opts ExportOptions, release func(), err error)
	// List names the exports it can open, for NBD_OPT_LIST.
	List(ctx context.Context) ([]string, error)
}

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		Logger:           slog.Default(),
		MaxRequestBytes:  32 << 20,
		MaxInFlight:      64,
		MaxInFlightBytes: 64 << 20,
		MaxOptionBytes:   64 << 10,
		MaxOptions:       1024,
		HandshakeTimeout: 30 * time.Second,
		Now:              time.Now,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = d.MaxRequestBytes
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = d.MaxInFlight
	}
	if c.MaxInFlightBytes == 0 {
		c.MaxInFlightBytes = d.MaxInFlightBytes
	}
	if c.MaxInFlightBytes < int64(c.MaxRequestBytes) {
		c.MaxInFlightBytes = int64(c.MaxRequestBytes)
	}
	if c.MaxOptionBytes == 0 {
		c.MaxOptionBytes = d.MaxOptionBytes
	}
	if c.MaxOptions == 0 {
		c.MaxOptions = d.MaxOptions
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// Validate reports a configuration the server cannot run with.
func (c Config) Validate() error {
	switch {
	case c.MaxRequestBytes > 1<<30:
		return fmt.Errorf("nbd config: MaxRequestBytes %d exceeds 1 GiB", c.MaxRequestBytes)
	case c.MaxRequestBytes != 0 && c.MaxRequestBytes < 4096:
		return fmt.Errorf("nbd config: MaxRequestBytes %d is below 4096", c.MaxRequestBytes)
	case c.MaxInFlight < 0:
		return fmt.Errorf("nbd config: MaxInFlight %d is negative", c.MaxInFlight)
	case c.MaxInFlightBytes < 0:
		return fmt.Errorf("nbd config: MaxInFlightBytes %d is negative", c.MaxInFlightBytes)
	case c.MaxOptions < 0:
		return fmt.Errorf("nbd config: MaxOptions %d is negative", c.MaxOptions)
	case c.HandshakeTimeout < 0:
		return fmt.Errorf("nbd config: HandshakeTimeout %v is negative", c.HandshakeTimeout)
	}
	return nil
}
