package hypervisor

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/hypervisor/internal/agentlink"
	"github.com/shoal-hci/shoal/hypervisor/internal/qemu"
	"github.com/shoal-hci/shoal/peer/client"
)

// Statuses the daemon writes itself (the others come from qemu.Status).
const (
	statusStopped = qemu.StatusStopped
	statusCrashed = qemu.StatusCrashed
	// statusStarting is written between winning the claim and QEMU
	// answering.
	statusStarting qemu.Status = "starting"
)

// peerAPI is what the daemon asks shoal peer (client.Client); tests
// fake it.
type peerAPI interface {
	ListState(ctx context.Context, prefix string) (client.StateList, error)
	PutState(ctx context.Context, key string, fields map[string]string) (client.StateWrite, error)
	WatchStateOnce(ctx context.Context, prefix string, from uint64, wait time.Duration) (client.StateWatchBatch, error)
	Nodes(ctx context.Context) ([]client.Member, error)
	Claim(ctx context.Context, req client.ClaimRequest) (client.Claim, error)
	GetClaim(ctx context.Context, resource string) (client.ClaimView, error)
	Fence(ctx context.Context) (client.FenceStatus, error)
	WaitFence(ctx context.Context, last client.FenceStatus) (client.FenceStatus, error)
}

// machine is one VM process the daemon controls (a QEMU; tests fake it).
type machine interface {
	Spec() qemu.Spec
	Status(ctx context.Context) (qemu.Status, error)
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	Stop(ctx context.Context, grace time.Duration) error
	Kill(ctx context.Context) error
	Exited() <-chan struct{}
	// Agent is what the guest agent last reported.
	Agent() agentlink.Status
	// Close lets go of the process; it keeps running.
	Close() error
	// Migrate live-migrates the VM to the incoming QEMU at uri
	// (qemu.VM.Migrate).
	Migrate(ctx context.Context, uri string, opts qemu.MigrateOptions) (qemu.MigrationInfo, error)
}

// runner starts machines and finds those an earlier daemon left.
type runner interface {
	Start(ctx context.Context, spec qemu.Spec) (machine, error)
	Reattach(ctx context.Context) []machine
	// StartIncoming starts a migration destination for spec listening
	// on host (port picked by QEMU), taking the VM over tls, and returns
	// the URI the source migrates to.
	StartIncoming(ctx context.Context, spec qemu.Spec, host string, postcopy bool, tls *qemu.MigrationTLS) (machine, string, error)
	// MigrationTLS is this node's credentials for a migration with node
	// other: as the destination when server, else as the source
	// (migrate.go).
	MigrationTLS(other string, server bool) (*qemu.MigrationTLS, error)
	// Remove deletes a VM's runtime directory once its process is gone.
	Remove(id string)
}

// qemuRunner runs VMs as QEMU processes below dir.
type qemuRunner struct {
	cfg Config
	log *slog.Logger

	mu   sync.Mutex
	host *qemu.Host // probed on the first start
}

func (r *qemuRunner) probe(ctx context.Context) (qemu.Host, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.host != nil {
		return *r.host, nil
	}
	host, err := qemu.ProbeHost(ctx, qemu.ProbeOptions{QEMU: r.cfg.QEMU, Kernel: r.cfg.ProbeKernel, Accel: qemu.Accel(r.cfg.Accel)})
	if err != nil {
		return qemu.Host{}, err
	}
	r.log.Info("qemu host", "qemu", host.QEMU, "accel", host.Accel, "why", host.AccelReason, "vsock", host.Vsock)
	r.host = &host
	return host, nil
}

func (r *qemuRunner) Start(ctx context.Context, spec qemu.Spec) (machine, error) {
	host, err := r.probe(ctx)
	if err != nil {
		return nil, err
	}
	vm, err := qemu.Start(ctx, host, filepath.Join(r.cfg.RuntimeDir, spec.ID), spec, qemu.StartOptions{Log: r.log})
	if err != nil {
		return nil, err
	}
	return newQEMUMachine(vm, r.log), nil
}

func (r *qemuRunner) StartIncoming(ctx context.Context, spec qemu.Spec, host string, postcopy bool, tls *qemu.MigrationTLS) (machine, string, error) {
	h, err := r.probe(ctx)
	if err != nil {
		return nil, "", err
	}
	vm, err := qemu.Start(ctx, h, filepath.Join(r.cfg.RuntimeDir, spec.ID), spec, qemu.StartOptions{Log: r.log, Incoming: true})
	if err != nil {
		return nil, "", err
	}
	uri, err := vm.Incoming(ctx, net.JoinHostPort(host, "0"), postcopy, tls)
	if err != nil {
		vm.Kill(context.WithoutCancel(ctx))
		vm.Close()
		return nil, "", err
	}
	return newQEMUMachine(vm, r.log), uri, nil
}

func (r *qemuRunner) MigrationTLS(other string, server bool) (*qemu.MigrationTLS, error) {
	return nodeMigrationTLS(r.cfg.DataDir, other, server)
}

func (r *qemuRunner) Reattach(ctx context.Context) []machine {
	entries, err := os.ReadDir(r.cfg.RuntimeDir)
	if err != nil {
		r.log.Warn("cannot read the runtime dir; no VM re-attached", "err", err)
		return nil
	}
	var ms []machine
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(r.cfg.RuntimeDir, e.Name())
		vm, err := qemu.Attach(ctx, dir, nil, r.log)
		switch {
		case errors.Is(err, qemu.ErrNotRunning) || errors.Is(err, os.ErrNotExist):
			continue // kept: qemu.log and console.log say why it ended
		case err != nil:
			r.log.Warn("cannot re-attach to a VM's QEMU; it keeps running unmanaged", "dir", dir, "err", err)
			continue
		}
		st, err := vm.Status(ctx)
		r.log.Info("re-attached", "vm", vm.Spec().Name, "status", st, "err", err)
		ms = append(ms, newQEMUMachine(vm, r.log))
	}
	return ms
}

func (r *qemuRunner) Remove(id string) {
	if err := os.RemoveAll(filepath.Join(r.cfg.RuntimeDir, id)); err != nil {
		r.log.Warn("remove vm runtime dir", "id", id, "err", err)
	}
}

// qemuMachine is a qemu.VM with its agent link running beside it.
type qemuMachine struct {
	*qemu.VM
	link   *agentlink.Link
	cancel context.CancelFunc
	done   chan struct{}
}

func newQEMUMachine(vm *qemu.VM, log *slog.Logger) *qemuMachine {
	m := &qemuMachine{VM: vm, done: make(chan struct{})}
	cfg := agentlink.DefaultConfig(qemu.AgentSocket(vm.Dir()))
	cfg.Logger = log.With("vm", vm.Spec().Name)
	link, err := agentlink.New(cfg)
	if err != nil { // only a bad config, which DefaultConfig is not
		log.Warn("no agent link", "vm", vm.Spec().Name, "err", err)
		close(m.done)
		m.cancel = func() {}
		return m
	}
	m.link = link
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		link.Run(ctx)
	}()
	return m
}

func (m *qemuMachine) Agent() agentlink.Status {
	if m.link == nil {
		return agentlink.Status{}
	}
	return m.link.Status()
}

func (m *qemuMachine) Close() error {
	m.cancel()
	<-m.done
	return m.VM.Close()
}
