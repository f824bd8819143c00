package qemu

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/qmp"
)

// MigrationInfo is QEMU's view of a migration (query-migrate).
type MigrationInfo struct {
	Status string // setup, active, postcopy-active, pre-switchover, device, completed, failed, cancelled…
	// Total is the time since the migration started; Downtime the time
	// the guest did not run (QEMU's figure, set once completed);
	// ExpectedDowntime QEMU's estimate while active.
	Total, Downtime, ExpectedDowntime, Setup time.Duration
	// RAM bytes: transferred so far, still to send, guest total.
	Transferred, Remaining, RAMTotal uint64
	// Passes over memory (dirty-sync-count); PostcopyRequests counts
	// pages the destination faulted in from the source.
	Passes, PostcopyRequests uint64
	// Error is QEMU's description when the migration failed.
	Error string
	// Postcopy is set once the migration has entered post-copy.
	Postcopy bool
}

type wireMigrate struct {
	Status           string `json:"status"`
	TotalTime        int64  `json:"total-time"`
	Downtime         int64  `json:"downtime"`
	ExpectedDowntime int64  `json:"expected-downtime"`
	SetupTime        int64  `json:"setup-time"`
	ErrorDesc        string `json:"error-desc"`
	RAM              *struct {
		Transferred      uint64 `json:"transferred"`
		Remaining        uint64 `json:"remaining"`
		Total            uint64 `json:"total"`
		DirtySyncCount   uint64 `json:"dirty-sync-count"`
		PostcopyRequests uint64 `json:"postcopy-requests"`
	} `json:"ram"`
	SocketAddress []struct {
		Type string `json:"type"`
		Host string `json:"host"`
		Port string `json:"port"`
	} `json:"socket-address"`
}

func (w wireMigrate) info() MigrationInfo {
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	mi := MigrationInfo{Status: w.Status, Total: ms(w.TotalTime), Downtime: ms(w.Downtime),
		ExpectedDowntime: ms(w.ExpectedDowntime), Setup: ms(w.SetupTime), Error: w.ErrorDesc}
	if r := w.RAM; r != nil {
		mi.Transferred, mi.Remaining, mi.RAMTotal = r.Transferred, r.Remaining, r.Total
		mi.Passes, mi.PostcopyRequests = r.DirtySyncCount, r.PostcopyRequests
	}
	return mi
}

func (vm *VM) queryMigrate(ctx context.Context) (wireMigrate, error) {
	var w wireMigrate
	err := vm.qmp.ExecuteInto(ctx, "query-migrate", nil, &w)
	return w, err
}

func (vm *VM) setCapabilities(ctx context.Context, caps map[string]bool) error {
	var list []map[string]any
	for name, on := range caps {
		list = append(list, map[string]any{"capability": name, "state": on})
	}
	_, err := vm.qmp.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": list})
	return err
}

// MigrationTLS is what one side of a migration over mutual TLS needs, in
// PEM: the CA both sides' certificates must be signed by, and this side's
// certificate and key.
type MigrationTLS struct {
	CACert, Cert, Key []byte
	// Hostname is the name the destination's certificate must carry; the
	// source checks it (the subject alternative DNS names, or without
	// any, the common name). Required on the source, unused on the
	// destination.
	Hostname string
	// Peer is the node the source's certificate must name (its common
	// name, in this side's cluster); the destination checks it (QEMU's
	// tls-authz). Empty: any certificate of the CA. Unused on the source.
	Peer string
}

// migrationTLSID is the QOM id of the migration's tls-creds-x509 object;
// migrationAuthzID the destination's check of the source's identity.
const (
	migrationTLSID   = "shoal-migration-tls"
	migrationAuthzID = "shoal-migration-authz"
)

// peerDN is the distinguished name, as QEMU's authz check prints it, of
// the certificate of node peer in the cluster of the certificate certPEM
// (node certificates name the node in the common name and the cluster in
// the organization). QEMU (gnutls) prints the attributes in the order
// they are encoded, "O=cluster,CN=node", the reverse of RFC 4514's (and
// of Go's Name.String); checked with real QEMU by TestMigrate and
// TestMigrateTLSRefused.
func peerDN(certPEM []byte, peer string) (string, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return "", errors.New("this node's certificate is not PEM")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return "", fmt.Errorf("this node's certificate: %w", err)
	}
	seq := pkix.Name{CommonName: peer, Organization: c.Subject.Organization}.ToRDNSequence()
	slices.Reverse(seq) // String prints the last attribute first
	return seq.String(), nil
}

// setMigrationTLS makes the VM's next migration (as the destination when
// server, else as the source) run over mutual TLS with t, or in clear
// when t is nil. The credentials go through files in a directory of the
// VM's runtime dir only the owner can read; QEMU loads them when the
// object is created, and they are removed before this returns.
func (vm *VM) setMigrationTLS(ctx context.Context, server bool, t *MigrationTLS) error {
	if t == nil {
		_, err := vm.qmp.Execute(ctx, "migrate-set-parameters", map[string]any{"tls-creds": "", "tls-hostname": "", "tls-authz": ""})
		return err
	}
	endpoint := "client"
	if server {
		endpoint = "server"
	} else if t.Hostname == "" {
		return fmt.Errorf("migration tls: no hostname to check the destination's certificate against")
	}
	dir := filepath.Join(vm.dir, "migration-tls")
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("migration tls: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("migration tls: %w", err)
	}
	defer os.RemoveAll(dir)
	files := map[string][]byte{"ca-cert.pem": t.CACert, endpoint + "-cert.pem": t.Cert, endpoint + "-key.pem": t.Key}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return fmt.Errorf("migration tls: %w", err)
		}
	}
	// A previous migration's credentials; none is fine.
	vm.qmp.Execute(ctx, "object-del", map[string]any{"id": migrationTLSID})
	if _, err := vm.qmp.Execute(ctx, "object-add", map[string]any{"qom-type": "tls-creds-x509", "id": migrationTLSID,
		"dir": dir, "endpoint": endpoint, "verify-peer": true}); err != nil {
		return fmt.Errorf("migration tls: load the credentials: %w", err)
	}
	params := map[string]any{"tls-creds": migrationTLSID, "tls-hostname": t.Hostname, "tls-authz": ""}
	if server && t.Peer != "" {
		dn, err := peerDN(t.Cert, t.Peer)
		if err != nil {
			return fmt.Errorf("migration tls: %w", err)
		}
		vm.qmp.Execute(ctx, "object-del", map[string]any{"id": migrationAuthzID})
		if _, err := vm.qmp.Execute(ctx, "object-add", map[string]any{"qom-type": "authz-simple", "id": migrationAuthzID, "identity": dn}); err != nil {
			return fmt.Errorf("migration tls: the check of the source's identity: %w", err)
		}
		params["tls-authz"] = migrationAuthzID
	}
	if _, err := vm.qmp.Execute(ctx, "migrate-set-parameters", params); err != nil {
		return fmt.Errorf("migration tls: %w", err)
	}
	return nil
}

// MigrationTLSCreds is the tls-creds migration parameter: the QOM id of
// the credentials the VM's migrations use, "" when they go in clear.
func (vm *VM) MigrationTLSCreds(ctx context.Context) (string, error) {
	var p struct {
		TLSCreds string `json:"tls-creds"`
	}
	err := vm.qmp.ExecuteInto(ctx, "query-migrate-parameters", nil, &p)
	return p.TLSCreds, err
}

// Incoming opens the migration listener of a VM started with
// StartOptions.Incoming, on addr (host:port; port 0 picks one), and
// returns the URI the source passes to Migrate. postcopy must match the
// source's MigrateOptions.Postcopy; tls (nil: in clear) must be set on
// both sides or neither.
func (vm *VM) Incoming(ctx context.Context, addr string, postcopy bool, tls *MigrationTLS) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("incoming migration of vm %s: %w", vm.spec.Name, err)
	}
	if err := vm.setMigrationTLS(ctx, true, tls); err != nil {
		return "", fmt.Errorf("incoming migration of vm %s: %w", vm.spec.Name, err)
	}
	if postcopy {
		if err := vm.setCapabilities(ctx, map[string]bool{"postcopy-ram": true}); err != nil {
			return "", fmt.Errorf("incoming migration of vm %s: %w", vm.spec.Name, err)
		}
	}
	uri := "tcp:" + net.JoinHostPort(host, port)
	if _, err := vm.qmp.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}); err != nil {
		return "", fmt.Errorf("incoming migration of vm %s: %w", vm.spec.Name, err)
	}
	w, err := vm.queryMigrate(ctx)
	if err != nil {
		return "", fmt.Errorf("incoming migration of vm %s: %w", vm.spec.Name, err)
	}
	for _, sa := range w.SocketAddress {
		if sa.Type == "inet" {
			if _, err := strconv.Atoi(sa.Port); err == nil {
				port = sa.Port
			}
		}
	}
	return "tcp:" + net.JoinHostPort(host, port), nil
}

// MigrateOptions tune Migrate.
type MigrateOptions struct {
	// Postcopy switches to post-copy once the migration is under way:
	// the destination runs at once and faults missing pages in from the
	// source. The destination's Incoming must have been told too.
	Postcopy bool
	// Switchover runs when the source has stopped its vCPUs and flushed
	// its disks, before the destination may start: the daemon takes the
	// VM's claim at a higher epoch here. An error cancels the migration
	// and the source resumes. nil means no hook. If the migration fails
	// after the hook returned, Migrate pauses the source and its error
	// wraps ErrAfterSwitchover.
	Switchover func(ctx context.Context) error
	// Progress is called with every poll of query-migrate; nil: none.
	Progress func(MigrationInfo)
	// MaxBandwidth in bytes/s; 0 keeps QEMU's default (128 MiB/s).
	MaxBandwidth uint64
	// MaxDowntime QEMU aims for at switchover; 0 keeps QEMU's 300 ms.
	MaxDowntime time.Duration
	// TLS runs the migration over mutual TLS; nil: in clear. The
	// destination's Incoming must have been given TLS too.
	TLS *MigrationTLS
}

// Migrate live-migrates the VM to the destination QEMU listening at uri
// (from Incoming) and returns QEMU's final figures once the migration has
// completed; the source is then in StatusStopped (postmigrate) and the
// caller stops its process. If ctx ends, the migration is cancelled.
func (vm *VM) Migrate(ctx context.Context, uri string, opts MigrateOptions) (MigrationInfo, error) {
	fail := func(err error) (MigrationInfo, error) {
		return MigrationInfo{}, fmt.Errorf("migrate vm %s to %s: %w", vm.spec.Name, uri, err)
	}
	if err := vm.setCapabilities(ctx, map[string]bool{
		"pause-before-switchover": true,
		"postcopy-ram":            opts.Postcopy,
		"events":                  true, // MIGRATION events wake the loop at once
	}); err != nil {
		return fail(err)
	}
	if err := vm.setMigrationTLS(ctx, false, opts.TLS); err != nil {
		return fail(err)
	}
	params := map[string]any{}
	if opts.MaxBandwidth > 0 {
		params["max-bandwidth"] = opts.MaxBandwidth
	}
	if opts.MaxDowntime > 0 {
		params["downtime-limit"] = opts.MaxDowntime.Milliseconds()
	}
	if len(params) > 0 {
		if _, err := vm.qmp.Execute(ctx, "migrate-set-parameters", params); err != nil {
			return fail(err)
		}
	}
	before, err := vm.Status(ctx)
	if err != nil {
		return fail(err)
	}
	if _, err := vm.qmp.Execute(ctx, "migrate", map[string]any{"uri": uri}); err != nil {
		return fail(err)
	}
	cancel := func(cause error) (MigrationInfo, error) {
		cctx, done := context.WithTimeout(context.WithoutCancel(ctx), quitTimeout)
		defer done()
		vm.qmp.Execute(cctx, "migrate_cancel", nil)
		vm.waitMigrationEnd(cctx)
		// QEMU restarts a source that was running; make sure.
		if vm.settle(cctx) == "paused" && before == StatusRunning {
			vm.Resume(cctx)
		}
		return fail(cause)
	}
	postcopyStarted, switched, inPostcopy, completedEvent := false, false, false, false
	events := vm.qmp.Events()
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		w, err := vm.queryMigrate(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return cancel(ctx.Err())
			}
			return fail(err)
		}
		mi := w.info()
		inPostcopy = inPostcopy || mi.Status == "postcopy-active"
		mi.Postcopy = inPostcopy
		if opts.Progress != nil {
			opts.Progress(mi)
		}
		switch mi.Status {
		case "completed":
			// The MIGRATION events up to "completed" precede this reply on
			// the wire: read them to learn whether post-copy ran.
			if !completedEvent {
				inPostcopy = vm.drainMigrationEvents(ctx, events) || inPostcopy
			}
			mi.Postcopy = inPostcopy
			// QEMU sets "completed" a moment before it computes the
			// total time and downtime; wait for the figures.
			for range 20 {
				if mi.Total > 0 {
					break
				}
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				if w, err := vm.queryMigrate(ctx); err == nil && w.Status == "completed" {
					mi = w.info()
					mi.Postcopy = inPostcopy
				}
			}
			return mi, nil
		case "failed", "cancelled":
			if switched {
				// QEMU restarts a source whose migration failed, but the
				// claim has moved on: keep the guest stopped and let the
				// caller decide (re-claim and resume, or not).
				sctx, done := context.WithTimeout(context.WithoutCancel(ctx), quitTimeout)
				if vm.settle(sctx) == "running" {
					vm.Pause(sctx)
				}
				done()
				return fail(fmt.Errorf("%w: %w: %s %s", ErrMigration, ErrAfterSwitchover, mi.Status, mi.Error))
			}
			return fail(fmt.Errorf("%w: %s %s", ErrMigration, mi.Status, mi.Error))
		case "active":
			if opts.Postcopy && !postcopyStarted {
				if _, err := vm.qmp.Execute(ctx, "migrate-start-postcopy", nil); err != nil {
					return cancel(err)
				}
				postcopyStarted = true
			}
		case "pre-switchover":
			if !switched {
				switched = true
				if opts.Switchover != nil {
					if err := opts.Switchover(ctx); err != nil {
						return cancel(fmt.Errorf("switchover hook: %w", err))
					}
				}
				if _, err := vm.qmp.Execute(ctx, "migrate-continue", map[string]any{"state": "pre-switchover"}); err != nil {
					return cancel(err)
				}
			}
		}
		select {
		case ev, ok := <-events:
			if !ok {
				events = nil
			} else if ev.Name == "MIGRATION" {
				var d struct{ Status string }
				json.Unmarshal(ev.Data, &d)
				if d.Status == "setup" { // events of an earlier migration end here
					inPostcopy, completedEvent = false, false
				}
				inPostcopy = inPostcopy || d.Status == "postcopy-active"
				completedEvent = completedEvent || d.Status == "completed"
			}
		case <-ctx.Done():
			if switched {
				// The destination may already run: never resume the source.
				return fail(ctx.Err())
			}
			return cancel(ctx.Err())
		case <-t.C:
		}
	}
}

// settle waits until a source whose migration ended unsuccessfully has
// left finish-migrate (QEMU sets "failed" or "cancelled" before it
// restarts the guest) and returns QEMU's run state then.
func (vm *VM) settle(ctx context.Context) string {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := vm.qmp.ExecuteInto(ctx, "query-status", nil, &st); err != nil || st.Status != "finish-migrate" {
			return st.Status
		}
		select {
		case <-ctx.Done():
			return st.Status
		case <-t.C:
		}
	}
}

// drainMigrationEvents reads events until MIGRATION "completed" and
// reports whether "postcopy-active" was among them.
func (vm *VM) drainMigrationEvents(ctx context.Context, events <-chan qmp.Event) bool {
	if events == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	postcopy := false
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return postcopy
			}
			if ev.Name != "MIGRATION" {
				continue
			}
			var d struct{ Status string }
			json.Unmarshal(ev.Data, &d)
			switch d.Status {
			case "postcopy-active":
				postcopy = true
			case "completed":
				return postcopy
			}
		case <-ctx.Done():
			return postcopy
		}
	}
}

func (vm *VM) waitMigrationEnd(ctx context.Context) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if w, err := vm.queryMigrate(ctx); err != nil || !migrationActive(w.Status) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// WaitIncoming waits on a migration destination until the incoming
// migration has ended and returns the VM's status then: StatusRunning
// once the guest runs here. A destination whose incoming migration fails
// exits (StatusCrashed).
func (vm *VM) WaitIncoming(ctx context.Context) (Status, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		st, err := vm.Status(ctx)
		if err != nil {
			return "", err
		}
		if st != StatusMigrating {
			return st, nil
		}
		select {
		case <-vm.w.exited:
		case <-ctx.Done():
			return "", fmt.Errorf("wait for incoming migration of vm %s: %w", vm.spec.Name, ctx.Err())
		case <-t.C:
		}
	}
}
