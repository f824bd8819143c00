package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/peer/client"
)

func printClaimJSON(env *verb.Env, v any) error {
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printClaims(env *verb.Env, vs []client.ClaimView) {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESOURCE\tEPOCH\tHOLDER\tSTATE\tCONFIRMED")
	for _, v := range vs {
		h := v.Holder
		if h == "" {
			h = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%v\n", v.Resource, v.Epoch, h, v.State, v.Confirmed)
	}
	tw.Flush()
}

// ClaimGet prints a resource's claim as a majority of voters sees it.
func ClaimGet(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "claim get")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	v, err := fs.client().GetClaim(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	if *asJSON {
		return printClaimJSON(env, v)
	}
	printClaims(env, []client.ClaimView{v})
	return nil
}

// ClaimLs lists this node's last known view of every claim (no network).
func ClaimLs(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "claim ls")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	vs, err := fs.client().Claims(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printClaimJSON(env, vs)
	}
	if len(vs) == 0 {
		fmt.Fprintln(env.Stdout, "no claims known on this node")
		return nil
	}
	printClaims(env, vs)
	return nil
}

// ClaimTake claims a resource for this node (debug verb: daemons claim
// what they run themselves). Without --epoch it takes the next epoch.
func ClaimTake(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "claim take")
	epoch := fs.String("epoch", "", "claim this epoch instead of the next one")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	req := client.ClaimRequest{Resource: fs.Arg(0)}
	if *epoch != "" {
		e, err := strconv.ParseUint(*epoch, 10, 64)
		if err != nil || e == 0 {
			return verb.Usagef("--epoch %q: want a whole number from 1 up", *epoch)
		}
		req.Epoch = e
	}
	c, err := fs.client().Claim(ctx, req)
	if err != nil {
		if client.ClaimCode(err) == client.ClaimErrNoQuorum {
			return fmt.Errorf("%w\nthe outcome is unknown: run `shoal claim get %s` before acting", err, req.Resource)
		}
		return err
	}
	if *asJSON {
		return printClaimJSON(env, c)
	}
	fmt.Fprintf(env.Stdout, "%s: epoch %d held by %s (this node)\n", c.Resource, c.Epoch, c.Holder)
	return nil
}

// printFence prints the fence line of `shoal status`.
func printFence(env *verb.Env, f *client.FenceStatus) {
	if f == nil {
		return
	}
	state := "not fenced"
	if f.Fenced {
		state = "FENCED: no majority of voters heard recently; claims refused, VMs paused"
	}
	fmt.Fprintf(env.Stdout, "fence:    %s (heard %d of %d voters, need %d; since %s)\n",
		state, f.Heard, len(f.Voters), f.Need, f.Since.Local().Format(time.DateTime))
}
