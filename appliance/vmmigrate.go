package appliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/hypervisor"
	"github.com/shoal-hci/shoal/peer/client"
)

// VMMigrate asks for the live migration of a running VM: it writes the
// request into the VM's record; the node running it carries it out.
func VMMigrate(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vm migrate")
	to := fs.String("to", "", "destination node: its ID, a unique prefix of it, or its name (default: placement picks one)")
	postcopy := fs.Bool("postcopy", false, "switch to post-copy: the VM runs on the destination at once and pulls its memory from the source")
	wait := fs.Duration("wait", 0, "wait up to this long for the migration to end and print its figures (0: do not wait)")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	c := fs.client()
	name := fs.Arg(0)
	rec, err := c.GetState(ctx, hypervisor.RecordPrefix+name)
	if errors.Is(err, client.ErrStateNotFound) {
		return fmt.Errorf("no vm named %q (`shoal vm ls` lists them)", name)
	}
	if err != nil {
		return err
	}
	fields := registers(rec)
	vm, err := hypervisor.ParseVMRecord(rec.Key, fields)
	if err != nil {
		return err
	}
	if vm.Status == "migrating" || fields[hypervisor.FieldMigrate] != "" {
		return fmt.Errorf("vm %s is being migrated already (`shoal vm info %s` shows how far it got)", name, name)
	}
	if vm.Node == "" || vm.Status != "running" || vm.Desired != hypervisor.DesiredRunning {
		st := vm.Status
		if st == "" {
			st = "stopped"
		}
		return fmt.Errorf("vm %s is %s, not running: only a running vm can move (`shoal vm start %s` first)", name, st, name)
	}
	members, err := c.Nodes(ctx)
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, m := range members {
		names[m.ID] = m.Name
	}
	req := hypervisor.MigrateRequest{Postcopy: *postcopy}
	if *to != "" {
		m, err := findMember(members, *to)
		if err != nil {
			return err
		}
		switch {
		case m.ID == vm.Node:
			return fmt.Errorf("vm %s already runs on node %s: name another node (`shoal node ls`)", name, nodeLabel(m.ID, names))
		case m.State != client.StateAlive:
			return fmt.Errorf("node %s is %s: only an alive node can take vm %s (`shoal node ls`)", nodeLabel(m.ID, names), m.State, name)
		}
		req.To = m.ID
	}
	dest, err := migrationTarget(ctx, c, members, vm, req.To)
	if err != nil {
		return err
	}
	var idb [8]byte
	rand.Read(idb[:])
	req.ID = hex.EncodeToString(idb[:])
	if _, err := c.PutState(ctx, hypervisor.RecordPrefix+name, req.Fields()); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "vm %s: migrating from %s to %s (request %s)\n", name, nodeLabel(vm.Node, names), nodeLabel(dest, names), req.ID)
	if *wait <= 0 {
		fmt.Fprintf(env.Stdout, "`shoal vm info %s` shows its progress\n", name)
		return nil
	}
	mg, err := waitMigration(ctx, c, name, req.ID, *wait)
	if err != nil {
		return err
	}
	if mg.Phase == hypervisor.MigrationFailed {
		return fmt.Errorf("vm %s: migration to %s failed: %s", name, nodeLabel(mg.To, names), mg.Error)
	}
	fmt.Fprintf(env.Stdout, "vm %s: runs on %s; %s\n", name, nodeLabel(mg.To, names), migrationFigures(*mg))
	return nil
}

// findMember resolves a node given by ID, unique ID prefix or name.
func findMember(members []client.Member, s string) (client.Member, error) {
	var found []client.Member
	for _, m := range members {
		if m.ID == s || m.Name == s {
			return m, nil
		}
		if strings.HasPrefix(m.ID, s) {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return client.Member{}, fmt.Errorf("no node %q in this cluster (`shoal node ls` lists them)", s)
	}
	return client.Member{}, fmt.Errorf("%q names %d nodes: give more of the ID", s, len(found))
}

func nodeLabel(id string, names map[string]string) string {
	if n := names[id]; n != "" && n != id {
		return n + " (" + id + ")"
	}
	return id
}

// migrationTarget checks that a node can take vm, as the source will:
// to, or the one placement picks among the other alive hypervisors.
func migrationTarget(ctx context.Context, c *client.Client, members []client.Member, vm hypervisor.VMRecord, to string) (string, error) {
	hosts, err := c.ListState(ctx, hypervisor.HostPrefix)
	if err != nil {
		return "", err
	}
	hostRec := map[string]client.StateRecord{}
	for _, r := range hosts.Records {
		hostRec[strings.TrimPrefix(r.Key, hypervisor.HostPrefix)] = r
	}
	var cands []hypervisor.Candidate
	for _, m := range members {
		r, ok := hostRec[m.ID]
		if m.ID == vm.Node || m.State != client.StateAlive || strings.Contains(m.Roles, "witness") || (to != "" && m.ID != to) {
			continue
		}
		if !ok {
			if to != "" {
				return "", fmt.Errorf("node %s runs no hypervisor (no %s%s record): it cannot take vm %s", to, hypervisor.HostPrefix, to, vm.Name)
			}
			continue
		}
		f := registers(r)
		cd := hypervisor.Candidate{ID: m.ID}
		fmt.Sscan(f[hypervisor.FieldHostMemoryMiB], &cd.MemoryMiB)
		fmt.Sscan(f[hypervisor.FieldHostCPUs], &cd.CPUs)
		cands = append(cands, cd)
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("no other alive node runs a hypervisor: vm %s cannot move now (`shoal node ls`)", vm.Name)
	}
	l, err := c.ListState(ctx, hypervisor.RecordPrefix)
	if err != nil {
		return "", err
	}
	var vms []hypervisor.VMRecord
	for _, r := range l.Records {
		if o, err := hypervisor.ParseVMRecord(r.Key, registers(r)); err == nil {
			vms = append(vms, o)
		}
	}
	return hypervisor.Place(vm, cands, vms)
}

// waitMigration polls vm name until the migration of request id has
// ended and returns its final status.
func waitMigration(ctx context.Context, c *client.Client, name, id string, d time.Duration) (*hypervisor.MigrationStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := "no progress yet"
	for {
		v, err := getVM(ctx, c, name)
		if mg := v.Migration; err == nil && mg != nil && mg.ID == id {
			if mg.Phase == hypervisor.MigrationCompleted || mg.Phase == hypervisor.MigrationFailed {
				return mg, nil
			}
			last = mg.Phase
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("vm %s: the migration did not end within %v (last phase: %s); it may still end: `shoal vm info %s`", name, d, last, name)
		case <-t.C:
		}
	}
}

// migrationFigures is one line of a migration's figures.
func migrationFigures(m hypervisor.MigrationStatus) string {
	kind := "pre-copy"
	if m.Postcopy {
		kind = "post-copy"
	}
	s := fmt.Sprintf("%s, %s of %s sent", kind, mib(m.Transferred), mib(m.Total))
	if m.Phase == hypervisor.MigrationCompleted {
		s += fmt.Sprintf(", total %d ms, downtime %d ms", m.TotalMS, m.DowntimeMS)
	}
	return s
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// migrationLine is `vm info`'s migration row.
func migrationLine(m hypervisor.MigrationStatus) string {
	s := fmt.Sprintf("to %s: %s, %s", m.To, m.Phase, migrationFigures(m))
	if m.Error != "" {
		s += ": " + m.Error
	}
	return s
}
