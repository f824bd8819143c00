package nbd

import (
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
