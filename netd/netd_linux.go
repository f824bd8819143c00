package netd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/netd/internal/backplane"
	"github.com/shoal-hci/shoal/netd/internal/dhcpc"
	"github.com/shoal-hci/shoal/netd/internal/linkctl"
	"github.com/shoal-hci/shoal/netd/internal/netspec"
)

// dhcpRunner is one running DHCP client.
type dhcpRunner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Run reconciles until ctx ends; it returns nil then.
func (d *Daemon) Run(ctx context.Context) error {
	ctl, err := linkctl.New()
	if err != nil {
		return err
	}
	defer ctl.Close()
	bpAddr, err := backplane.Address(d.cfg.NodeID)
	if err != nil {
		return err
	}
	bonding := ctl.BondingAvailable()
	if !bonding {
		d.log.Warn("the kernel has no bonding driver: netd uses one NIC directly, without failover")
	}
	bridging := ctl.BridgingAvailable()
	if !bridging {
		d.log.Warn("the kernel has no bridge driver: the LAN has no bridge, VM NICs cannot join it")
	}
	d.log.Info("netd starting", "backplane", bpAddr, "spec", d.cfg.SpecPath, "bonding", bonding, "bridging", bridging)

	var (
		mu      sync.Mutex
		dhcp    = map[string]dhcpc.Status{}
		runners = map[string]*dhcpRunner{}
		wg      sync.WaitGroup
		poke    = make(chan struct{}, 1)
	)
	wake := func() {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
	defer func() {
		for _, r := range runners {
			r.cancel()
		}
		wg.Wait()
	}()
	startDHCP := func(iface, port string) {
		cctx, cancel := context.WithCancel(ctx)
		r := &dhcpRunner{cancel: cancel, done: make(chan struct{})}
		runners[iface] = r
		cfg := dhcpc.Config{
			Interface:     iface,
			Transport:     dhcpc.NetTransport{Interface: iface, Hostname: d.cfg.Hostname},
			Host:          &host{ctl: ctl, iface: iface, resolv: d.cfg.ResolvConf},
			Log:           d.log.With("dhcp", iface),
			MinRetry:      d.cfg.DHCPMinRetry,
			FallbackAfter: d.cfg.DHCPFallbackAfter,
			OnChange: func(s dhcpc.Status) {
				mu.Lock()
				dhcp[iface] = s
				mu.Unlock()
				wake()
			},
		}
		if d.cfg.StateDir != "" {
			cfg.LeaseFile = filepath.Join(d.cfg.StateDir, "lease-"+iface+".json")
			if port != "" {
				// The LAN moved onto a new bridge: the port's lease
				// (same MAC) is restored on the bridge at once.
				adoptLease(d.log, filepath.Join(d.cfg.StateDir, "lease-"+port+".json"), cfg.LeaseFile)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(r.done)
			if err := dhcpc.Run(cctx, cfg); err != nil {
				d.log.Error("DHCP client stopped", "iface", iface, "err", err)
			}
		}()
	}
	stopDHCP := func(iface string, port bool) {
		r := runners[iface]
		r.cancel()
		<-r.done
		delete(runners, iface)
		mu.Lock()
		ll := dhcp[iface].LinkLocal
		delete(dhcp, iface)
		mu.Unlock()
		if p, err := netip.ParsePrefix(ll); err == nil && port {
			// The client leaves its addresses; a bridge port keeps none.
			if err := ctl.DelAddr(iface, p); err != nil {
				d.log.Warn("could not remove the link-local address from the bridge port", "iface", iface, "err", err)
			}
		}
	}

	wctx, wcancel := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	wwg.Add(1)
	go func() {
		defer wwg.Done()
		if err := linkctl.Watch(wctx, wake); err != nil {
			d.log.Warn("no link change notifications: carrier changes are seen at the next tick", "err", err)
		}
	}()
	defer func() { wcancel(); wwg.Wait() }()

	spec := netspec.Spec{}.WithDefaults()
	ready := false
	var last Status
	tick := time.NewTicker(d.cfg.Interval)
	defer tick.Stop()
	for {
		var problems []string
		if s, err := loadSpec(d.cfg.SpecPath); err != nil {
			problems = append(problems, err.Error())
		} else {
			spec = s
		}
		plan, obs, observed, errs := d.pass(ctl, spec, bonding, bridging, bpAddr)
		problems = append(problems, errs...)

		for iface := range runners {
			if !observed {
				break // no observation: leave the DHCP clients as they are
			}
			if !slices.Contains(plan.DHCP, iface) {
				d.log.Info("stopping DHCP client", "iface", iface)
				stopDHCP(iface, iface == plan.LANPort)
			}
		}
		for _, iface := range plan.DHCP {
			if runners[iface] == nil {
				d.log.Info("starting DHCP client", "iface", iface)
				port := ""
				if iface == plan.Bridge {
					port = plan.LANPort
				}
				startDHCP(iface, port)
			}
		}
		if d.cfg.ResolvConf != "" {
			if dns := staticDNS(spec); len(dns) > 0 {
				if err := writeResolv(d.cfg.ResolvConf, dns, ""); err != nil {
					problems = append(problems, err.Error())
				}
			}
		}

		mu.Lock()
		st := d.status(ctl, plan, obs, dhcp, bonding, bpAddr, spec)
		mu.Unlock()
		st.Problems = append(st.Problems, problems...)
		for _, p := range problems {
			if !slices.Contains(last.Problems, p) {
				d.log.Warn("reconcile problem", "problem", p) // once, not every pass
			}
		}
		if st.Ready && !ready {
			ready = true
			d.log.Info("network ready", "lan", st.LAN, "backplane", st.Backplane.Address)
			if d.cfg.Ready != nil {
				d.cfg.Ready()
			}
		}
		if !sameStatus(st, last) {
			st.Updated = time.Now().UTC()
			if err := writeStatus(d.cfg.StatusPath, st); err != nil {
				d.log.Error("could not write the network status", "err", err)
			} else {
				last = st
			}
			d.log.Debug("status", "phase", st.Phase)
		}
		if d.cfg.Heartbeat != nil {
			d.cfg.Heartbeat()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-poke:
		}
	}
}

// pass observes, plans and applies once; it returns the plan and the
// observation after applying, and whether the links could be observed.
func (d *Daemon) pass(ctl *linkctl.Ctl, spec netspec.Spec, bonding, bridging bool, bpAddr netip.Prefix) (netspec.Plan, netspec.Observed, bool, []string) {
	in := netspec.Inputs{BackplaneAddr: bpAddr, BackplanePrefix: backplane.Prefix}
	obs, err := ctl.Observe(bonding, bridging)
	if err != nil {
		return netspec.Plan{}, obs, false, []string{err.Error()}
	}
	plan := netspec.Make(spec, obs, in)
	if len(plan.Actions) == 0 {
		return plan, obs, true, nil
	}
	var problems []string
	for _, a := range plan.Actions {
		d.log.Info("apply", "action", a.String())
		if err := ctl.Apply(a); err != nil {
			problems = append(problems, err.Error())
			break
		}
	}
	if obs2, err := ctl.Observe(bonding, bridging); err == nil {
		obs = obs2
		plan = netspec.Make(spec, obs, in)
	}
	return plan, obs, true, problems
}

func (d *Daemon) status(ctl *linkctl.Ctl, plan netspec.Plan, obs netspec.Observed, dhcp map[string]dhcpc.Status, bonding bool, bpAddr netip.Prefix, spec netspec.Spec) Status {
	bpState := string(linkctl.AddrMissing)
	if plan.Backplane != "" {
		if state, err := ctl.AddrState(plan.Backplane, bpAddr); err == nil {
			bpState = string(state)
		}
	}
	return buildStatus(statusInputs{plan: plan, obs: obs, dhcp: dhcp, bonding: bonding, bpAddr: bpAddr, bpState: bpState, spec: spec,
		activeSlave: func(bond string) string {
			b, err := os.ReadFile(filepath.Join("/sys/class/net", bond, "bonding/active_slave"))
			if err != nil {
				return ""
			}
			return strings.TrimSpace(string(b))
		}})
}

// adoptLease renames the lease file from to to when to does not exist,
// so a client moved from one interface to another (same MAC) restores
// the lease instead of asking for a new one.
func adoptLease(log *slog.Logger, from, to string) {
	if _, err := os.Stat(to); err == nil {
		return
	}
	if err := os.Rename(from, to); err == nil {
		log.Info("lease moved to the bridge", "from", from, "to", to)
	} else if !errors.Is(err, fs.ErrNotExist) {
		log.Warn("could not move the lease file to the bridge: the bridge asks for a new lease", "err", err)
	}
}

func staticDNS(spec netspec.Spec) []string {
	dns := slices.Clone(spec.LAN.DNS)
	if spec.Backplane != nil {
		dns = append(dns, spec.Backplane.DNS...)
	}
	return dns
}

func sameStatus(a, b Status) bool {
	a.Updated, b.Updated = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func writeStatus(path string, st Status) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return dhcpc.WriteFileAtomic(path, append(b, '\n'), 0o644)
}

func writeResolv(path string, dns []string, domain string) error {
	var b strings.Builder
	b.WriteString("# written by shoal netd\n")
	if domain != "" {
		fmt.Fprintf(&b, "search %s\n", domain)
	}
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	if old, err := os.ReadFile(path); err == nil && string(old) == b.String() {
		return nil
	}
	return dhcpc.WriteFileAtomic(path, []byte(b.String()), 0o644)
}

// host is dhcpc.Host over linkctl.
type host struct {
	ctl    *linkctl.Ctl
	iface  string
	resolv string
}

func (h *host) WaitCarrier(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if ok, err := h.ctl.Carrier(h.iface); err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (h *host) Apply(l dhcpc.Lease) error {
	left := time.Until(l.Expires())
	if left <= time.Second {
		return fmt.Errorf("lease for %s already expired", l.Address)
	}
	if err := h.ctl.SetAddr(h.iface, l.Address, left); err != nil {
		return err
	}
	if l.Router.IsValid() {
		if err := h.ctl.SetDefaultRoute(h.iface, l.Router); err != nil {
			return err
		}
	}
	if h.resolv != "" && len(l.DNS) > 0 {
		var dns []string
		for _, a := range l.DNS {
			dns = append(dns, a.String())
		}
		if err := writeResolv(h.resolv, dns, l.Domain); err != nil {
			return err
		}
	}
	return nil
}

func (h *host) Remove(l dhcpc.Lease) error { return h.ctl.DelAddr(h.iface, l.Address) }

func (h *host) ClaimLinkLocal(ctx context.Context) (netip.Prefix, error) {
	a, err := dhcpc.ClaimLinkLocal(ctx, h.iface)
	if err != nil {
		return netip.Prefix{}, err
	}
	p := netip.PrefixFrom(a, 16)
	if err := h.ctl.SetAddr(h.iface, p, 0); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

func (h *host) DropLinkLocal(p netip.Prefix) error { return h.ctl.DelAddr(h.iface, p) }
