package appliance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe"
)

// The `shoal vsd …` verbs manage virtual storage devices: records in the
// cluster state that every node's scribe serves over NBD.

// VSDInfo is one VSD as `shoal vsd ls/info --json` print it.
type VSDInfo struct {
	Name     string    `json:"name"`
	ID       string    `json:"id"`
	Size     int64     `json:"size"`
	Replicas int       `json:"replicas"`
	Created  time.Time `json:"created"`
	// ReadOnly: its content is final (an image); every node may read it
	// at once and writes are refused.
	ReadOnly  bool  `json:"read_only,omitempty"`
	Allocated int64 `json:"allocated"`
	Degraded  int   `json:"degraded_extents"`
	// Unavailable counts extents with no reachable up-to-date copy.
	Unavailable int `json:"unavailable_extents"`
	// Owner is the node serving the VSD now (empty: nobody has it
	// open), from its last status; Epoch its claim epoch.
	Owner string `json:"owner,omitempty"`
	Epoch uint64 `json:"epoch,omitempty"`
	// StatusUpdated is when the owner last published the status.
	StatusUpdated time.Time `json:"status_updated,omitzero"`
	// Claim is the VSD's claim as a majority sees it (info only).
	Claim *client.ClaimView `json:"claim,omitempty"`
}

func vsdInfo(rec scribe.VSDRecord, st scribe.VSDStatus) VSDInfo {
	return VSDInfo{
		Name: rec.Name, ID: rec.ID.String(), Size: rec.Size, Replicas: rec.Replicas, Created: rec.Created, ReadOnly: rec.ReadOnly,
		Allocated: st.Allocated, Degraded: st.Degraded, Unavailable: st.Unavailable,
		Owner: st.Owner, Epoch: st.Epoch, StatusUpdated: st.Updated,
	}
}

// vsdTarget parses the command line of a verb on one VSD (flags already
// declared on fs) and reads the VSD.
func vsdTarget(ctx context.Context, env *verb.Env, fs *flagSetWithSocket, args []string) (*client.Client, scribe.VSDRecord, scribe.VSDStatus, error) {
	if err := fs.parse(env, args, 1); err != nil {
		return nil, scribe.VSDRecord{}, scribe.VSDStatus{}, err
	}
	c := fs.client()
	rec, st, err := getVSD(ctx, c, fs.Arg(0))
	return c, rec, st, err
}

// getVSD reads a VSD record and its status.
func getVSD(ctx context.Context, c *client.Client, name string) (scribe.VSDRecord, scribe.VSDStatus, error) {
	if err := scribe.ValidName(name); err != nil {
		return scribe.VSDRecord{}, scribe.VSDStatus{}, verb.Usagef("%v", err)
	}
	r, err := c.GetState(ctx, scribe.VSDPrefix+name)
	if errors.Is(err, client.ErrStateNotFound) {
		return scribe.VSDRecord{}, scribe.VSDStatus{}, fmt.Errorf("no VSD named %q (`shoal vsd ls` lists them)", name)
	}
	if err != nil {
		return scribe.VSDRecord{}, scribe.VSDStatus{}, err
	}
	rec, err := scribe.ParseVSD(r)
	if err != nil {
		return scribe.VSDRecord{}, scribe.VSDStatus{}, err
	}
	var st scribe.VSDStatus
	if sr, err := c.GetState(ctx, scribe.VSDStatusPrefix+name); err == nil {
		st = scribe.ParseVSDStatus(sr)
	} else if !errors.Is(err, client.ErrStateNotFound) {
		return rec, st, err
	}
	return rec, st, nil
}

func parseReplicas(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < scribe.MinReplicas || n > scribe.MaxReplicas {
		return 0, verb.Usagef("--replicas %q: want %d or %d", s, scribe.MinReplicas, scribe.MaxReplicas)
	}
	return n, nil
}

// VSDCreate is `shoal vsd create NAME --size S [--replicas 2|3]`.
func VSDCreate(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vsd create")
	size := fs.String("size", "", "size, like 4G or 512M (binary units; required)")
	replicas := fs.String("replicas", strconv.Itoa(scribe.DefaultReplicas), "copies of every extent, on distinct nodes: 2 or 3")
	asJSON := fs.Bool("json", false, "print the new VSD as JSON")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	name := fs.Arg(0)
	if err := scribe.ValidName(name); err != nil {
		return verb.Usagef("%v", err)
	}
	if *size == "" {
		return verb.Usagef("vsd create needs --size, like --size 4G")
	}
	n, err := scribe.ParseSize(*size)
	if err != nil {
		return verb.Usagef("--size: %v", err)
	}
	r, err := parseReplicas(*replicas)
	if err != nil {
		return err
	}
	c := fs.client()
	if _, err := c.GetState(ctx, scribe.VSDPrefix+name); err == nil {
		return fmt.Errorf("a VSD named %q exists already: pick another name, or `shoal vsd rm %s` first", name, name)
	} else if !errors.Is(err, client.ErrStateNotFound) {
		return err
	}
	rec := scribe.VSDRecord{Name: name, ID: scribe.NewVSDID(), Size: n, Replicas: r, Created: time.Now().UTC().Truncate(time.Second)}
	if _, err := c.PutState(ctx, scribe.VSDPrefix+name, rec.Fields()); err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, vsdInfo(rec, scribe.VSDStatus{}))
	}
	fmt.Fprintf(env.Stdout, "created VSD %s: %s, %d replicas (nbd+unix:///%s?socket=%s on any node)\n", name, scribe.FormatSize(n), r, name, scribe.DefaultNBDSocket)
	return nil
}

// VSDLs is `shoal vsd ls [--json]`.
func VSDLs(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vsd ls")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	c := fs.client()
	l, err := c.ListState(ctx, scribe.VSDPrefix)
	if err != nil {
		return err
	}
	sl, err := c.ListState(ctx, scribe.VSDStatusPrefix)
	if err != nil {
		return err
	}
	status := map[string]scribe.VSDStatus{}
	for _, r := range sl.Records {
		status[strings.TrimPrefix(r.Key, scribe.VSDStatusPrefix)] = scribe.ParseVSDStatus(r)
	}
	infos := []VSDInfo{}
	for _, r := range l.Records {
		rec, err := scribe.ParseVSD(r)
		if err != nil {
			fmt.Fprintf(env.Stderr, "shoal vsd ls: skipping %s: %v\n", r.Key, err)
			continue
		}
		infos = append(infos, vsdInfo(rec, status[rec.Name]))
	}
	slices.SortFunc(infos, func(a, b VSDInfo) int { return strings.Compare(a.Name, b.Name) })
	if *asJSON {
		return printJSON(env.Stdout, infos)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tREPLICAS\tALLOCATED\tDEGRADED\tOWNER")
	for _, i := range infos {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", i.Name, scribe.FormatSize(i.Size), i.Replicas, scribe.FormatSize(i.Allocated), i.Degraded, orDash(i.Owner))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// VSDInfoVerb is `shoal vsd info NAME [--json]`.
func VSDInfoVerb(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vsd info")
	asJSON := fs.Bool("json", false, "print as JSON")
	c, rec, st, err := vsdTarget(ctx, env, fs, args)
	if err != nil {
		return err
	}
	info := vsdInfo(rec, st)
	var claimErr error
	if v, err := c.GetClaim(ctx, scribe.ClaimResource(rec.Name)); err == nil {
		info.Claim = &v
	} else {
		claimErr = err
	}
	if *asJSON {
		return printJSON(env.Stdout, info)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", info.Name)
	fmt.Fprintf(tw, "id:\t%s\n", info.ID)
	fmt.Fprintf(tw, "size:\t%s (%d bytes)\n", scribe.FormatSize(info.Size), info.Size)
	fmt.Fprintf(tw, "replicas:\t%d\n", info.Replicas)
	fmt.Fprintf(tw, "created:\t%s\n", info.Created.Format(time.RFC3339))
	if info.ReadOnly {
		fmt.Fprintf(tw, "access:\tread-only (any number of nodes read it at once, without a claim; writes are refused)\n")
	} else {
		fmt.Fprintf(tw, "access:\tread-write (one node at a time, the holder of its claim)\n")
	}
	fmt.Fprintf(tw, "allocated:\t%s (%d bytes, all replicas)\n", scribe.FormatSize(info.Allocated), info.Allocated)
	deg := fmt.Sprintf("%d", info.Degraded)
	if info.Degraded > 0 {
		deg += " (extents with fewer replicas than configured; healing is not built yet)"
	}
	fmt.Fprintf(tw, "degraded extents:\t%s\n", deg)
	if info.Unavailable > 0 {
		fmt.Fprintf(tw, "unavailable extents:\t%d (no reachable up-to-date copy: bring the down nodes back)\n", info.Unavailable)
	}
	if info.Owner != "" {
		fmt.Fprintf(tw, "open on:\t%s (epoch %d, status of %s)\n", info.Owner, info.Epoch, info.StatusUpdated.Format(time.RFC3339))
	} else {
		fmt.Fprintf(tw, "open on:\tnobody\n")
	}
	switch {
	case info.Claim != nil && info.Claim.State == client.ClaimNone:
		fmt.Fprintf(tw, "claim:\tnever claimed\n")
	case info.Claim != nil:
		fmt.Fprintf(tw, "claim:\tepoch %d, holder %s (%s)\n", info.Claim.Epoch, orDash(info.Claim.Holder), info.Claim.State)
	default:
		fmt.Fprintf(tw, "claim:\tunknown: %v\n", claimErr)
	}
	return tw.Flush()
}

// VSDResize is `shoal vsd resize NAME --size S` (grow only).
func VSDResize(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vsd resize")
	size := fs.String("size", "", "new size, like 8G (larger than now; required)")
	c, rec, st, err := vsdTarget(ctx, env, fs, args)
	if err != nil {
		return err
	}
	if *size == "" {
		return verb.Usagef("vsd resize needs --size, like --size 8G")
	}
	n, err := scribe.ParseSize(*size)
	if err != nil {
		return verb.Usagef("--size: %v", err)
	}
	switch {
	case n < rec.Size:
		return fmt.Errorf("VSD %s is %s: shrinking to %s would cut off its data, refused (only growing is supported)", rec.Name, scribe.FormatSize(rec.Size), scribe.FormatSize(n))
	case n == rec.Size:
		fmt.Fprintf(env.Stdout, "VSD %s is %s already\n", rec.Name, scribe.FormatSize(n))
		return nil
	}
	if _, err := c.PutState(ctx, scribe.VSDPrefix+rec.Name, map[string]string{"size": strconv.FormatInt(n, 10)}); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "VSD %s: %s → %s\n", rec.Name, scribe.FormatSize(rec.Size), scribe.FormatSize(n))
	if st.Owner != "" {
		fmt.Fprintf(env.Stdout, "it is open on %s: clients see the new size once every connection to it has closed and it is opened again\n", st.Owner)
	}
	return nil
}

// VSDRm is `shoal vsd rm NAME [--force]`.
func VSDRm(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "vsd rm")
	force := fs.Bool("force", false, "remove even if a node reports it open (a node that died with it open)")
	c, rec, st, err := vsdTarget(ctx, env, fs, args)
	if err != nil {
		return err
	}
	if st.Owner != "" && !*force {
		return fmt.Errorf("VSD %s is in use: open on node %s (epoch %d, status of %s); stop what uses it first (or --force if that node is dead)",
			rec.Name, st.Owner, st.Epoch, st.Updated.Format(time.RFC3339))
	}
	// Every node frees the VSD's chunks when it sees this record.
	if _, err := c.PutState(ctx, scribe.DeletedKey(rec.ID), map[string]string{"name": rec.Name, "deleted": time.Now().UTC().Format(time.RFC3339)}); err != nil {
		return err
	}
	if _, err := c.DeleteState(ctx, scribe.VSDPrefix+rec.Name); err != nil {
		return err
	}
	if _, err := c.DeleteState(ctx, scribe.VSDStatusPrefix+rec.Name); err != nil && !errors.Is(err, client.ErrStateNotFound) {
		var e *client.Error
		if !errors.As(err, &e) || e.Status != 404 {
			return err
		}
	}
	fmt.Fprintf(env.Stdout, "removed VSD %s\n", rec.Name)
	return nil
}
