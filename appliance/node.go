package appliance

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/peer/client"
)

type flagSetWithSocket struct {
	*flag.FlagSet
	socket *string
	pos    []string // positional arguments
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
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	ms, err := fs.client().Nodes(ctx)
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
