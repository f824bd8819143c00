package dhcpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"
)

// ErrNAK is returned by a Transport when the server refuses a request.
var ErrNAK = errors.New("DHCP server sent NAK")

// Transport runs DHCP exchanges.
type Transport interface {
	// Acquire runs DISCOVER, OFFER, REQUEST, ACK by broadcast.
	Acquire(ctx context.Context) (Lease, error)
	// Renew sends a REQUEST by unicast to the lease's server (RENEWING).
	Renew(ctx context.Context, l Lease) (Lease, error)
	// Rebind sends a REQUEST by broadcast to any server (REBINDING).
	Rebind(ctx context.Context, l Lease) (Lease, error)
}

// Host changes the machine.
type Host interface {
	// WaitCarrier returns once the interface is up with carrier.
	WaitCarrier(ctx context.Context) error
	// Apply installs the lease's address (with its lifetime), default
	// route and DNS servers; Remove takes them away.
	Apply(l Lease) error
	Remove(l Lease) error
	// ClaimLinkLocal picks, probes and installs an RFC 3927 address; it
	// blocks for the probes (3 to 7 s). DropLinkLocal removes it.
	ClaimLinkLocal(ctx context.Context) (netip.Prefix, error)
	DropLinkLocal(p netip.Prefix) error
}

// States of the client.
const (
	StateCarrier   = "waiting-for-carrier"
	StateSelecting = "selecting"
	StateBound     = "bound"
	StateRenewing  = "renewing"
	StateRebinding = "rebinding"
)

// Status is the client's observable state.
type Status struct {
	Interface string    `json:"interface"`
	State     string    `json:"state"`
	Lease     *Lease    `json:"lease,omitempty"`
	Restored  bool      `json:"restored,omitempty"`   // the lease came from the lease file
	LinkLocal string    `json:"link_local,omitempty"` // RFC 3927 fallback address, while it is held
	LastError string    `json:"last_error,omitempty"`
	Failures  int       `json:"failures,omitempty"` // failed acquisitions in a row
	CarrierAt time.Time `json:"carrier_at,omitzero"`
	BoundAt   time.Time `json:"bound_at,omitzero"`
}

// Config configures one client.
type Config struct {
	Interface string       // required
	LeaseFile string       // "": leases are not persisted
	Transport Transport    // required
	Host      Host         // required
	Log       *slog.Logger // nil: discard
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// FallbackAfter is how many acquisitions fail in a row before the
	// link-local fallback; 0: 2.
	FallbackAfter int
	// MinRetry is the shortest wait between renewal attempts; 0: 60 s
	// (RFC 2131 §4.4.5).
	MinRetry time.Duration
	// MaxBackoff caps the wait between failed acquisitions (which starts
	// at 2 s and doubles); 0: 64 s.
	MaxBackoff time.Duration
	// OnChange, if set, gets every new status (from Run's goroutine).
	OnChange func(Status)
}

type client struct {
	cfg Config
	st  Status
	log *slog.Logger
}

// Run runs the client until ctx ends; it returns nil then. It leaves the
// lease's address in place on return (the lease file and the address's
// lifetime carry it across a restart).
func Run(ctx context.Context, cfg Config) error {
	if cfg.Interface == "" || cfg.Transport == nil || cfg.Host == nil {
		return fmt.Errorf("dhcp client: Interface, Transport and Host are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FallbackAfter <= 0 {
		cfg.FallbackAfter = 2
	}
	if cfg.MinRetry <= 0 {
		cfg.MinRetry = 60 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 64 * time.Second
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &client{cfg: cfg, log: log.With("iface", cfg.Interface), st: Status{Interface: cfg.Interface}}
	err := c.run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (c *client) publish() {
	if c.cfg.OnChange != nil {
		st := c.st
		if st.Lease != nil {
			l := *st.Lease
			st.Lease = &l
		}
		c.cfg.OnChange(st)
	}
}

func (c *client) setState(s string) {
	c.st.State = s
	c.publish()
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (c *client) run(ctx context.Context) error {
	c.setState(StateCarrier)
	if err := c.cfg.Host.WaitCarrier(ctx); err != nil {
		return err
	}
	c.st.CarrierAt = c.cfg.Now()
	c.log.Debug("carrier up")

	var lease *Lease
	verify := false
	if c.cfg.LeaseFile != "" {
		l, ok, err := LoadLease(c.cfg.LeaseFile)
		switch {
		case err != nil:
			c.log.Warn("ignoring the saved lease", "err", err)
		case ok && c.cfg.Now().Before(l.Expires()):
			if err := c.cfg.Host.Apply(l); err != nil {
				c.log.Warn("could not reapply the saved lease", "err", err)
				break
			}
			c.log.Info("restored saved lease", "addr", l.Address, "expires", l.Expires().Format(time.RFC3339))
			lease, verify = &l, true
			c.st.Lease, c.st.Restored, c.st.BoundAt = &l, true, c.cfg.Now()
			c.setState(StateBound)
		}
	}

	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if lease == nil {
			lease = c.acquire(ctx)
			continue
		}
		now := c.cfg.Now()
		l := *lease
		switch {
		case !now.Before(l.Expires()):
			c.log.Warn("lease expired without renewal: address removed; looking for a DHCP server again", "addr", l.Address)
			c.drop(l, "lease expired")
			lease = nil
		case !now.Before(l.RebindAt()):
			lease = c.extend(ctx, l, StateRebinding, c.cfg.Transport.Rebind, l.Expires())
		case !now.Before(l.RenewAt()) || verify:
			verify = false
			lease = c.extend(ctx, l, StateRenewing, c.cfg.Transport.Renew, l.RebindAt())
		default:
			if err := sleep(ctx, l.RenewAt().Sub(now)); err != nil {
				return err
			}
		}
	}
}

// acquire runs one DORA attempt; it returns the lease or nil after a
// backoff (claiming a link-local address once enough attempts failed).
func (c *client) acquire(ctx context.Context) *Lease {
	c.setState(StateSelecting)
	l, err := c.cfg.Transport.Acquire(ctx)
	if err == nil {
		l = l.withDefaults()
		if err = c.cfg.Host.Apply(l); err == nil {
			c.bind(l)
			c.log.Info("lease bound", "addr", l.Address, "router", l.Router, "server", l.Server, "lease", l.Duration)
			return &l
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	c.st.Failures++
	c.st.LastError = err.Error()
	c.log.Info("no DHCP lease yet", "attempt", c.st.Failures, "err", err)
	if c.st.Failures >= c.cfg.FallbackAfter && c.st.LinkLocal == "" {
		c.publish()
		ll, err := c.cfg.Host.ClaimLinkLocal(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("could not claim an IPv4 link-local address", "err", err)
			}
		} else {
			c.st.LinkLocal = ll.String()
			c.log.Warn("no DHCP server answers: reachable at the IPv4 link-local address meanwhile; still trying DHCP", "addr", ll.Addr())
		}
	}
	c.publish()
	backoff := 2 * time.Second << min(c.st.Failures-1, 10)
	sleep(ctx, min(backoff, c.cfg.MaxBackoff))
	return nil
}

// bind records a fresh lease.
func (c *client) bind(l Lease) {
	if c.cfg.LeaseFile != "" {
		if err := SaveLease(c.cfg.LeaseFile, l); err != nil {
			c.log.Warn("could not save the lease; it will not survive a restart", "err", err)
		}
	}
	if c.st.LinkLocal != "" {
		if p, err := netip.ParsePrefix(c.st.LinkLocal); err == nil {
			if err := c.cfg.Host.DropLinkLocal(p); err != nil {
				c.log.Warn("could not remove the link-local address", "err", err)
			}
		}
		c.st.LinkLocal = ""
	}
	c.st.Lease, c.st.Restored, c.st.Failures, c.st.LastError = &l, false, 0, ""
	c.st.BoundAt = c.cfg.Now()
	c.setState(StateBound)
}

// drop removes a lease (NAK or expiry).
func (c *client) drop(l Lease, why string) {
	if err := c.cfg.Host.Remove(l); err != nil {
		c.log.Warn("could not remove the lease's address", "err", err)
	}
	if c.cfg.LeaseFile != "" {
		if err := os.Remove(c.cfg.LeaseFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("could not remove the lease file", "err", err)
		}
	}
	c.st.Lease, c.st.Restored, c.st.LastError = nil, false, why
	c.setState(StateSelecting)
}

// extend renews or rebinds; on failure it waits half the time left before
// deadline (at least MinRetry, at most until deadline) and returns the
// old lease for the loop to look at again.
func (c *client) extend(ctx context.Context, l Lease, state string, op func(context.Context, Lease) (Lease, error), deadline time.Time) *Lease {
	c.setState(state)
	nl, err := op(ctx, l)
	if err == nil {
		nl = nl.withDefaults()
		if err = c.cfg.Host.Apply(nl); err == nil {
			c.bind(nl)
			c.log.Debug("lease extended", "state", state, "addr", nl.Address, "lease", nl.Duration)
			return &nl
		}
	}
	if ctx.Err() != nil {
		return &l
	}
	if errors.Is(err, ErrNAK) {
		c.log.Warn("DHCP server refused the lease (NAK): address removed; starting over", "addr", l.Address)
		c.drop(l, err.Error())
		return nil
	}
	c.st.LastError = err.Error()
	c.log.Info("could not extend the lease; keeping it until it expires", "state", state, "err", err, "expires", l.Expires().Format(time.RFC3339))
	c.publish()
	left := deadline.Sub(c.cfg.Now())
	sleep(ctx, min(max(left/2, c.cfg.MinRetry), left))
	return &l
}
