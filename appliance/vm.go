package appliance

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/hypervisor"
	"github.com/shoal-hci/shoal/peer/client"
)

// vmInfo is `vm info --json` and one element of `vm ls --json`.
type vmInfo struct {
	Name         string                      `json:"name"`
	ID           string                      `json:"id"`
	Desired      string                      `json:"desired"`
	CPUs         int                         `json:"cpus"`
	MemoryMiB    int                         `json:"memory_mib"`
	Disks        []hypervisor.VMDisk         `json:"disks"`
	CDROM        string                      `json:"cdrom,omitempty"`
	NICs         []hypervisor.VMNIC          `json:"nics"`
	AntiAffinity string                      `json:"anti_affinity,omitempty"`
	Boot         hypervisor.Boot             `json:"boot"`
	Node         string                      `json:"node,omitempty"`
	Epoch        uint64                      `json:"epoch,omitempty"`
	Status       string                      `json:"status"`
	StatusDetail string                      `json:"status_detail,omitempty"`
	AgentSeen    string                      `json:"agent_seen,omitempty"`
	GuestIPs     []string                    `json:"guest_ips,omitempty"`
	Migration    *hypervisor.MigrationStatus `json:"migration,omitempty"`
}

func registers(r client.StateRecord) map[string]string {
	f := map[string]string{}
	for k, v := range r.Fields {
		f[k] = v.Value
	}
	return f
}

func decodeVM(r client.StateRecord) (vmInfo, error) {
	f := registers(r)
	rec, err := hypervisor.ParseVMRecord(r.Key, f)
	if err != nil {
		return vmInfo{}, err
	}
	boot, err := hypervisor.ParseBoot(r.Key, f)
	if err != nil {
		return vmInfo{}, err
	}
	in := vmInfo{Name: rec.Name, ID: rec.ID, Desired: string(rec.Desired), CPUs: rec.CPUs, MemoryMiB: rec.MemoryMiB,
		Disks: rec.Disks, CDROM: rec.CDROM, NICs: rec.NICs, AntiAffinity: rec.AntiAffinity, Boot: boot, Node: rec.Node, Epoch: rec.Epoch,
		Status: rec.Status, StatusDetail: rec.StatusDetail, AgentSeen: f[hypervisor.FieldAgentSeen], Migration: rec.Migration}
	if in.Status == "" {
		in.Status = "stopped"
	}
	if v := f[hypervisor.FieldGuestIPs]; v != "" {
		json.Unmarshal([]byte(v), &in.GuestIPs)
	}
	return in, nil
}

// getVM reads vm/NAME; a missing VM is an error that says so.
func getVM(ctx context.Context, c *client.Client, name string) (vmInfo, error) {
	r, err := c.GetState(ctx, hypervisor.RecordPrefix+name)
	if errors.Is(err, client.ErrStateNotFound) {
		return vmInfo{}, fmt.Errorf("no vm named %q (`shoal vm ls` lists them)", name)
	}
	if err != nil {
		return vmInfo{}, err
	}
	return decodeVM(r)
}

// VMCreate creates a VM record; the hypervisors place and start it.
func VMCreate(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vm create")
	cpus := fs.Int("cpus", 1, "vCPUs (1-255)")
	memory := fs.String("memory", "512M", "RAM: a number of MiB, or with a unit M or G (512M, 2G)")
	disks := stringList{}
	fs.Var(&disks, "disk", "the next disk (repeat; the first boots): SIZE, like 8G (a new VSD NAME-diskN, removed with the VM), vsd:NAME (an existing VSD) or image:NAME (an uploaded raw or qcow2 image, read-only)")
	iso := fs.String("iso", "", "attach this uploaded image (`shoal image upload`) as a read-only CD-ROM")
	bootFrom := fs.String("boot", "", "with --iso, what boots first: cdrom or disk (default: cdrom, unless a --disk vsd:NAME is given)")
	network := fs.String("net", hypervisor.NetworkDefault, "default (the node's LAN side) or none")
	kernel := fs.String("kernel", "", "boot this kernel directly: an absolute path present on every node (test guests, until `shoal image upload`)")
	initrd := fs.String("initrd", "", "initrd for --kernel (absolute path on every node)")
	appendArgs := fs.String("append", "", "kernel command line for --kernel")
	anti := fs.String("anti-affinity", "", "group name: VMs of one group avoid sharing a node")
	stopped := fs.Bool("stopped", false, "create it stopped (start it with `shoal vm start`)")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	name := fs.Arg(0)
	mib, err := parseMiB(*memory)
	if err != nil {
		return verb.Usagef("--memory %q: %v", *memory, err)
	}
	var idb [16]byte
	rand.Read(idb[:])
	rec := hypervisor.VMRecord{Name: name, ID: hex.EncodeToString(idb[:]), Desired: hypervisor.DesiredRunning,
		CPUs: *cpus, MemoryMiB: mib, AntiAffinity: *anti}
	if *stopped {
		rec.Desired = hypervisor.DesiredStopped
	}
	newDisks, err := parseDiskFlags(name, disks, &rec)
	if err != nil {
		return err
	}
	switch *network {
	case hypervisor.NetworkDefault:
		rec.NICs = []hypervisor.VMNIC{{Network: hypervisor.NetworkDefault, MAC: hypervisor.MACFor(rec.ID, 0)}}
	case hypervisor.NetworkNone:
	default:
		return verb.Usagef("--net %q: give default or none", *network)
	}
	boot := hypervisor.Boot{Kernel: *kernel, Initrd: *initrd, Append: *appendArgs, From: *bootFrom}
	rec.CDROM = *iso
	if err := setBootFrom(&rec, &boot); err != nil {
		return err
	}
	if err := boot.Validate(); err != nil {
		return verb.Usagef("%v", err)
	}
	for _, p := range []string{boot.Kernel, boot.Initrd} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("boot file: %w (it must exist at the same path on every node)", err)
		}
	}
	if boot.Kernel == "" && len(rec.Disks) == 0 && rec.CDROM == "" {
		return verb.Usagef("vm %s has nothing to boot: give --disk, --iso or --kernel PATH", name)
	}
	fields := rec.DesiredFields()
	if _, err := hypervisor.ParseVMRecord(hypervisor.RecordPrefix+name, fields); err != nil {
		return verb.Usagef("%v", err)
	}
	for k, v := range boot.Fields() {
		fields[k] = v
	}
	c := fs.client()
	if _, err := c.GetState(ctx, hypervisor.RecordPrefix+name); err == nil {
		return fmt.Errorf("vm %s exists already: pick another name, or `shoal vm rm %s` first", name, name)
	} else if !errors.Is(err, client.ErrStateNotFound) {
		return err
	}
	if err := checkVMMedia(ctx, c, &rec, newDisks); err != nil {
		return err
	}
	fields[hypervisor.FieldDisks] = rec.DesiredFields()[hypervisor.FieldDisks] // image formats
	if err := createVMDisks(ctx, env, c, *fs.socket, newDisks); err != nil {
		return err
	}
	if _, err := c.PutState(ctx, hypervisor.RecordPrefix+name, fields); err != nil {
		removeVMDisks(ctx, env, *fs.socket, newDisks, 0)
		return err
	}
	fmt.Fprintf(env.Stdout, "created vm %s (id %s, %s); `shoal vm info %s` shows where it runs\n", name, rec.ID, rec.Desired, name)
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// parseMiB parses 512, 512M, 2G into MiB.
func parseMiB(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1024, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		s = strings.TrimSuffix(s, "M")
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != s {
		return 0, fmt.Errorf("not a positive size in MiB (512, 512M) or GiB (2G)")
	}
	return n * mult, nil
}

// VMLs lists the VMs.
func VMLs(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vm ls")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	l, err := fs.client().ListState(ctx, hypervisor.RecordPrefix)
	if err != nil {
		return err
	}
	vms := []vmInfo{}
	for _, r := range l.Records {
		in, err := decodeVM(r)
		if err != nil {
			fmt.Fprintf(env.Stderr, "shoal vm ls: skipping %v\n", err)
			continue
		}
		vms = append(vms, in)
	}
	if *asJSON {
		return printJSON(env.Stdout, vms)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATUS\tDESIRED\tNODE\tEPOCH\tCPUS\tMEMORY")
	for _, v := range vms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d MiB\n", v.Name, v.Status, v.Desired, dash(v.Node), v.Epoch, v.CPUs, v.MemoryMiB)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// VMInfo prints one VM.
func VMInfo(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vm info")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	v, err := getVM(ctx, fs.client(), fs.Arg(0))
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, v)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("name", v.Name)
	row("id", v.ID)
	row("status", v.Status+detail(v.StatusDetail))
	row("desired", v.Desired)
	row("node", dash(v.Node))
	row("epoch", fmt.Sprint(v.Epoch))
	row("cpus", fmt.Sprint(v.CPUs))
	row("memory", fmt.Sprintf("%d MiB", v.MemoryMiB))
	for i, d := range v.Disks {
		row(fmt.Sprintf("disk %d", i), diskText(d))
	}
	if v.CDROM != "" {
		from := "boots first"
		if v.Boot.From == hypervisor.BootFromDisk {
			from = "boots after the disks"
		}
		row("cdrom", "image:"+v.CDROM+" ("+from+")")
	}
	for i, n := range v.NICs {
		row(fmt.Sprintf("nic %d", i), n.Network+" "+n.MAC)
	}
	if v.Boot.Kernel != "" {
		row("kernel", v.Boot.Kernel)
		row("initrd", dash(v.Boot.Initrd))
		row("append", v.Boot.Append)
	}
	if v.AntiAffinity != "" {
		row("anti-affinity", v.AntiAffinity)
	}
	row("agent seen", dash(v.AgentSeen))
	row("guest ips", dash(strings.Join(v.GuestIPs, ", ")))
	if m := v.Migration; m != nil {
		row("migration", migrationLine(*m))
	}
	return tw.Flush()
}

func detail(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// setDesired writes desired (and stop_force) of vm name, which must exist.
func setDesired(ctx context.Context, c *client.Client, name string, d hypervisor.Desired, force bool) error {
	if _, err := getVM(ctx, c, name); err != nil {
		return err
	}
	f := map[string]string{hypervisor.FieldDesired: string(d), hypervisor.FieldStopForce: ""}
	if force {
		f[hypervisor.FieldStopForce] = "1"
	}
	_, err := c.PutState(ctx, hypervisor.RecordPrefix+name, f)
	return err
}

// VMStart asks for a VM to run.
func VMStart(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vm start")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	if err := setDesired(ctx, fs.client(), fs.Arg(0), hypervisor.DesiredRunning, false); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "vm %s: starting\n", fs.Arg(0))
	return nil
}

// VMStop asks for a VM to stop: ACPI power button, or at once with --force.
func VMStop(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vm stop")
	force := fs.Bool("force", false, "stop at once, without asking the guest to power off")
	wait := fs.Duration("wait", 0, "wait up to this long until it has stopped (0: do not wait)")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	c := fs.client()
	if err := setDesired(ctx, c, fs.Arg(0), hypervisor.DesiredStopped, *force); err != nil {
		return err
	}
	if *wait > 0 {
		if err := waitStopped(ctx, c, fs.Arg(0), *wait); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "vm %s: stopped\n", fs.Arg(0))
		return nil
	}
	fmt.Fprintf(env.Stdout, "vm %s: stopping\n", fs.Arg(0))
	return nil
}

// waitStopped polls vm name until its status is stopped (and no node runs it).
func waitStopped(ctx context.Context, c *client.Client, name string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		v, err := getVM(ctx, c, name)
		if err == nil && v.Status == "stopped" && v.Node == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vm %s did not stop within %v (status %s on %s): try `shoal vm stop --force %s`", name, d, v.Status, dash(v.Node), name)
		case <-t.C:
		}
	}
}

// VMRestart stops a VM, waits until it has stopped, and starts it again.
func VMRestart(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vm restart")
	force := fs.Bool("force", false, "stop at once, without asking the guest to power off")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the stop")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	c := fs.client()
	name := fs.Arg(0)
	if err := setDesired(ctx, c, name, hypervisor.DesiredStopped, *force); err != nil {
		return err
	}
	if err := waitStopped(ctx, c, name, *wait); err != nil {
		return err
	}
	if err := setDesired(ctx, c, name, hypervisor.DesiredRunning, false); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "vm %s: stopped, starting again\n", name)
	return nil
}

// VMRm deletes a stopped VM's record and the disks made with it
// (`--disk SIZE`) unless --keep-disks; other VSDs and images stay.
func VMRm(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vm rm")
	force := fs.Bool("force", false, "remove it even if it runs (its QEMU is killed)")
	keepDisks := fs.Bool("keep-disks", false, "keep the disks made with the VM (--disk SIZE) as VSDs")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	c := fs.client()
	name := fs.Arg(0)
	v, err := getVM(ctx, c, name)
	if err != nil {
		return err
	}
	if !*force && (v.Desired != string(hypervisor.DesiredStopped) || v.Node != "") {
		return fmt.Errorf("vm %s is %s (desired %s): `shoal vm stop --wait 2m %s` first, or rm --force", name, v.Status, v.Desired, name)
	}
	if _, err := c.DeleteState(ctx, hypervisor.RecordPrefix+name); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "removed vm %s\n", name)
	return rmOwnedDisks(ctx, env, *fs.socket, v, *keepDisks)
}
