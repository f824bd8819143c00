package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"text/tabwriter"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/peer"
	"github.com/shoal-hci/shoal/peer/client"
)

type flagSetWithSocket struct {
	*flag.FlagSet
	socket *string
	pos    []string // positional arguments
	// addr and dataDir are set by addrFlags (status, node ls).
	addr, dataDir *string
}

// parse parses flags before and after positional arguments
// (`node approve ID --code N`) and checks their number.
func (f *flagSetWithSocket) parse(env *verb.Env, args []string, nargs int) error {
	for {
		if err := env.Parse(f.FlagSet, args); err != nil {
			return err
		}
		rest := f.FlagSet.Args()
		if len(rest) == 0 {
			break
		}
		f.pos = append(f.pos, rest[0])
		args = rest[1:]
	}
	if len(f.pos) != nargs {
		return verb.Usagef("%s takes %d argument(s), got %d", f.Name(), nargs, len(f.pos))
	}
	return nil
}

// Arg is the i-th positional argument.
func (f *flagSetWithSocket) Arg(i int) string { return f.pos[i] }

func (f *flagSetWithSocket) client() *client.Client { return client.New(*f.socket) }

// statusReader is what `status` and `node ls` read: the local API, or with
// --addr a member's node API.
type statusReader interface {
	Status(ctx context.Context) (client.Status, error)
	Nodes(ctx context.Context) ([]client.Member, error)
}

// addrFlags adds --addr and --data-dir to a read-only verb.
func (f *flagSetWithSocket) addrFlags() {
	f.addr = f.String("addr", "", "ask the member whose node API is at HOST[:PORT] (port 7443 by default) instead of the local socket")
	f.dataDir = f.String("data-dir", peer.DefaultDataDir, "data dir holding this node's cluster certificate (used with --addr)")
}

// reader is the local API, or with --addr the node API of that member,
// called with this node's cluster certificate.
func (f *flagSetWithSocket) reader() (statusReader, error) {
	if f.addr == nil || *f.addr == "" {
		return f.client(), nil
	}
	nt, err := peer.LoadNodeTLS(*f.dataDir)
	if errors.Is(err, peer.ErrNotMember) {
		return nil, fmt.Errorf("this node has no cluster certificate in %s; run it on a member (or without --addr): %w", *f.dataDir, err)
	}
	if errors.Is(err, fs.ErrPermission) {
		return nil, fmt.Errorf("%w (the cluster certificate is readable by root only: run as root)", err)
	}
	if err != nil {
		return nil, err
	}
	return client.NewRemote(*f.addr, nt.ClientTLS()), nil
}

func printMembers(env *verb.Env, ms []client.Member) {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tGOSSIP\tVERSION\tHARDWARE")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Name, m.State, m.Gossip, m.Version, m.Hardware)
	}
	tw.Flush()
}

// NodeLs lists members and pending nodes.
func NodeLs(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "node ls")
	asJSON := fs.Bool("json", false, "print as JSON")
	fs.addrFlags()
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	r, err := fs.reader()
	if err != nil {
		return err
	}
	ms, err := r.Nodes(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ms)
	}
	printMembers(env, ms)
	return nil
}

// NodeApprove admits a pending node (with --code under the code policy).
func NodeApprove(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "node approve")
	code := fs.String("code", "", "the six-digit code shown by the new node (policy code)")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	if err := fs.client().Approve(ctx, fs.Arg(0), *code); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "approved node %s; it joins on its next request\n", fs.Arg(0))
	return nil
}

// NodeRemove forgets a dead node for good.
func NodeRemove(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "node remove")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	if err := fs.client().Remove(ctx, fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "removed node %s: its certificate is revoked and the gossip key rotated\n", fs.Arg(0))
	return nil
}

// NodeEvents prints recent membership events.
func NodeEvents(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "node events")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	evs, err := fs.client().Events(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(evs)
	}
	for _, e := range evs {
		fmt.Fprintf(env.Stdout, "%s  %-10s %s %s\n", e.Time.Format("2006-01-02T15:04:05Z"), e.Type, e.NodeID, e.Detail)
	}
	return nil
}
