package appliance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/hypervisor"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe"
)

// newDisk is a VSD `vm create --disk SIZE` makes for the VM.
type newDisk struct {
	name string
	size string
}

// parseDiskFlags turns the --disk flags of vm name into rec.Disks and
// the VSDs to create; it only checks the syntax.
func parseDiskFlags(name string, flags []string, rec *hypervisor.VMRecord) ([]newDisk, error) {
	var create []newDisk
	for i, d := range flags {
		if vsd, ok := strings.CutPrefix(d, "vsd:"); ok && vsd != "" {
			rec.Disks = append(rec.Disks, hypervisor.VMDisk{VSD: vsd})
			continue
		}
		if img, ok := strings.CutPrefix(d, "image:"); ok && img != "" {
			rec.Disks = append(rec.Disks, hypervisor.VMDisk{VSD: img, ReadOnly: true})
			continue
		}
		if _, err := scribe.ParseSize(d); err != nil {
			return nil, verb.Usagef("--disk %q: give a size like 8G (a new disk), vsd:NAME (an existing VSD) or image:NAME (an uploaded image)", d)
		}
		vsd := hypervisor.OwnedDiskName(name, i)
		if err := scribe.ValidName(vsd); err != nil {
			return nil, verb.Usagef("--disk %s: %v", d, err)
		}
		rec.Disks = append(rec.Disks, hypervisor.VMDisk{VSD: vsd, Owned: true})
		create = append(create, newDisk{name: vsd, size: d})
	}
	return create, nil
}

// setBootFrom settles what boots first when the VM has a CD-ROM: as
// given, else the CD-ROM unless the VM has an existing VSD as a disk
// (that one was made bootable elsewhere).
func setBootFrom(rec *hypervisor.VMRecord, boot *hypervisor.Boot) error {
	if boot.From != "" && rec.CDROM == "" {
		return verb.Usagef("--boot needs --iso: without a CD-ROM the disks boot in order")
	}
	if rec.CDROM == "" || boot.From != "" {
		return nil
	}
	boot.From = hypervisor.BootFromCDROM
	for _, d := range rec.Disks {
		if !d.Owned && !d.ReadOnly {
			boot.From = hypervisor.BootFromDisk
		}
	}
	return nil
}

// checkVMMedia checks, before anything is written, that the images rec
// attaches are complete and fit (setting the format of image disks), and
// that the VSDs to create do not exist yet.
func checkVMMedia(ctx context.Context, c *client.Client, rec *hypervisor.VMRecord, create []newDisk) error {
	var imgs map[string]imageInfo
	image := func(name string) (imageInfo, error) {
		if imgs == nil {
			l, err := readImages(ctx, c)
			if err != nil {
				return imageInfo{}, err
			}
			imgs = map[string]imageInfo{}
			for _, in := range l {
				imgs[in.Name] = in
			}
		}
		in, ok := imgs[name]
		switch {
		case !ok:
			return in, fmt.Errorf("no image named %q (`shoal image ls` lists them; `shoal image upload FILE` adds one)", name)
		case !in.Complete:
			return in, fmt.Errorf("image %s is incomplete (its upload did not finish): upload it again first", name)
		}
		return in, nil
	}
	if rec.CDROM != "" {
		in, err := image(rec.CDROM)
		if err != nil {
			return fmt.Errorf("--iso: %w", err)
		}
		if in.Format == hypervisor.FormatQCOW2 {
			return fmt.Errorf("--iso %s: it is a qcow2 disk image, not an ISO: attach it with --disk image:%s", in.Name, in.Name)
		}
	}
	for i, d := range rec.Disks {
		if !d.ReadOnly {
			continue
		}
		in, err := image(d.VSD)
		if err != nil {
			return fmt.Errorf("--disk image:%s: %w", d.VSD, err)
		}
		if in.Format == hypervisor.FormatISO {
			return fmt.Errorf("--disk image:%s: it is an ISO: attach it with --iso %s", in.Name, in.Name)
		}
		rec.Disks[i].Format = in.Format
	}
	for _, d := range create {
		if _, err := c.GetState(ctx, scribe.VSDPrefix+d.name); err == nil {
			return fmt.Errorf("a VSD named %s exists already (left from an earlier vm %s?): `shoal vsd rm %s` first, or attach it with --disk vsd:%s", d.name, rec.Name, d.name, d.name)
		} else if !errors.Is(err, client.ErrStateNotFound) {
			return err
		}
	}
	return nil
}

// createVMDisks creates the VSDs of `--disk SIZE` through `shoal vsd
// create` (default replicas); on an error it removes those it made.
func createVMDisks(ctx context.Context, env *verb.Env, c *client.Client, socket string, create []newDisk) error {
	for i, d := range create {
		if err := callVerb(ctx, env, VSDCreate, d.name, "--size", d.size, "--socket", socket); err != nil {
			removeVMDisks(ctx, env, socket, create[:i], 0)
			return fmt.Errorf("create disk %s: %w", d.name, err)
		}
		fmt.Fprintf(env.Stdout, "created disk %s (%s VSD)\n", d.name, d.size)
	}
	return nil
}

// removeVMDisks removes VSDs through `shoal vsd rm`, retrying for up to
// wait while one is still open (the VM's QEMU is going away); it returns
// the names it could not remove with why.
func removeVMDisks(ctx context.Context, env *verb.Env, socket string, disks []newDisk, wait time.Duration) map[string]error {
	failed := map[string]error{}
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for _, d := range disks {
		for {
			err := callVerb(ctx, env, VSDRm, d.name, "--socket", socket)
			if err == nil || strings.Contains(err.Error(), "no VSD named") {
				break
			}
			if !strings.Contains(err.Error(), "in use") || waitCtx.Err() != nil {
				failed[d.name] = err
				break
			}
			sleepCtx(waitCtx, 500*time.Millisecond)
		}
	}
	return failed
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// rmOwnedDisks removes the disks vm v was created with, unless keep.
func rmOwnedDisks(ctx context.Context, env *verb.Env, socket string, v vmInfo, keep bool) error {
	var owned []newDisk
	for _, d := range v.Disks {
		if d.Owned {
			owned = append(owned, newDisk{name: d.VSD})
		}
	}
	if len(owned) == 0 {
		return nil
	}
	if keep {
		fmt.Fprintf(env.Stdout, "kept its disks as VSDs (`shoal vsd ls`)\n")
		return nil
	}
	failed := removeVMDisks(ctx, env, socket, owned, 15*time.Second)
	for _, d := range owned {
		if err := failed[d.name]; err != nil {
			fmt.Fprintf(env.Stdout, "disk %s kept: %v\n", d.name, err)
		} else {
			fmt.Fprintf(env.Stdout, "removed disk %s\n", d.name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d disk(s) of vm %s not removed: `shoal vsd rm` them once nothing uses them", len(failed), v.Name)
	}
	return nil
}

// diskText is a disk as `vm info` shows it.
func diskText(d hypervisor.VMDisk) string {
	switch {
	case d.ReadOnly:
		return "image:" + d.VSD + " (read-only, " + d.Format + ")"
	case d.Owned:
		return "vsd:" + d.VSD + " (made with the vm, removed with it)"
	}
	return "vsd:" + d.VSD
}
