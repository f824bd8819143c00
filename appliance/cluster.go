package appliance

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/peer/client"
)

// socketFlag returns a flag set with --socket for a CLI verb of peer.
func socketFlag(env *verb.Env, name string) *flagSetWithSocket {
	fs := env.FlagSet(name)
	s := fs.String("socket", client.DefaultSocket, "shoal peer's local API socket")
	return &flagSetWithSocket{FlagSet: fs, socket: s}
}

// ClusterCreate makes this unclaimed node the first member of a new cluster.
func ClusterCreate(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "cluster create")
	policy := fs.String("policy", client.PolicyAuto, "admission policy: auto, approve or code")
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	st, err := fs.client().CreateCluster(ctx, client.CreateRequest{Policy: *policy})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "created cluster %s (policy %s)\n", st.ClusterID, st.Policy)
	return nil
}

// ClusterJoin asks the cluster of the node at ADDR to admit this node.
func ClusterJoin(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "cluster join")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	st, err := fs.client().JoinCluster(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	switch st.Phase {
	case client.PhaseMember:
		fmt.Fprintf(env.Stdout, "joined cluster %s\n", st.ClusterID)
	default:
		if st.Code != "" {
			fmt.Fprintf(env.Stdout, "waiting for approval; if the cluster asks for a code, on a member run: shoal node approve %s --code %s\n", st.Self.ID, st.Code)
		} else {
			fmt.Fprintf(env.Stdout, "waiting for approval: on a member run `shoal node approve %s`\n", st.Self.ID)
		}
	}
	return nil
}

// ClusterLeave leaves the cluster gracefully; the node stays unclaimed.
func ClusterLeave(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "cluster leave")
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	if err := fs.client().LeaveCluster(ctx); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "left the cluster; this node is unclaimed until `shoal cluster create` or `shoal cluster join`")
	return nil
}

// ClusterRotateKey replaces the gossip key on every member.
func ClusterRotateKey(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "cluster rotate-key")
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	if err := fs.client().RotateKey(ctx); err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, "gossip key rotated on every member")
	return nil
}

// ClusterPolicy sets the cluster's admission policy.
func ClusterPolicy(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "cluster policy")
	if err := fs.parse(env, args, 1); err != nil {
		return err
	}
	if err := fs.client().SetPolicy(ctx, fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "admission policy is %s\n", fs.Arg(0))
	return nil
}

// Status prints the cluster as this node sees it.
func Status(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "status")
	asJSON := fs.Bool("json", false, "print as JSON")
	fs.addrFlags() // node.go
	if err := fs.parse(env, args, 0); err != nil {
		return err
	}
	r, err := fs.reader()
	if err != nil {
		return err
	}
	st, err := r.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	cid := st.ClusterID
	if cid == "" {
		cid = "(none: unclaimed)"
	}
	fmt.Fprintf(env.Stdout, "cluster:  %s\nphase:    %s\n", cid, st.Phase)
	if st.Policy != "" {
		fmt.Fprintf(env.Stdout, "policy:   %s\n", st.Policy)
	}
	fmt.Fprintf(env.Stdout, "this node: %s (%s)\n", st.Self.ID, st.Self.Name)
	printFence(env, st.Fence) // claim.go
	if st.Code != "" {
		fmt.Fprintf(env.Stdout, "admission code: %s\n", st.Code)
	}
	fmt.Fprintln(env.Stdout)
	printMembers(env, append(st.Members, st.Pending...))
	if len(st.Foreign) > 0 {
		fmt.Fprintln(env.Stdout, "\nother nodes on the backplane (not in this cluster):")
		for _, f := range st.Foreign {
			c := f.ClusterID
			if c == "" {
				c = "unclaimed"
			}
			fmt.Fprintf(env.Stdout, "  %s  %s  %s\n", f.ID, c, f.API)
		}
	}
	return nil
}
