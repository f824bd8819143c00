package appliance

import (
	"context"
	"fmt"
	"strings"

	"github.com/shoal-hci/shoal/appliance/internal/healthgate"
	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/appliance/units"
)

// InstallUnits writes the systemd units of the shoal daemons (and the
// health gate) into a root tree and enables them: `shoal install-units
// --root DIR [--daemons netd,peer,...]`. The image builder runs it.
func InstallUnits(ctx context.Context, env *verb.Env, args []string) error {
	fs := env.FlagSet("install-units")
	root := fs.String("root", "", "root of the tree to install into (required; / for this system)")
	daemons := fs.String("daemons", strings.Join(units.Daemons, ","), "comma-separated daemons to install units for (the others are left out)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return verb.Usagef("install-units takes no arguments")
	}
	if *root == "" {
		return verb.Usagef("--root is required (the root of the tree, / for this system)")
	}
	var list []string
	for _, d := range strings.Split(*daemons, ",") {
		if d = strings.TrimSpace(d); d != "" {
			list = append(list, d)
		}
	}
	plan, err := units.NewPlan(list)
	if err != nil {
		return verb.Usagef("%v", err)
	}
	if err := units.Install(*root, plan); err != nil {
		return err
	}
	for _, f := range plan.Files {
		env.Log.Debug("installed", "file", f.Path)
	}
	_, err = fmt.Fprintf(env.Stdout, "installed %d files and %d links under %s\n", len(plan.Files), len(plan.Links), *root)
	return err
}

// Health runs the node's health gate (shoal-health.service): `shoal health
// [--wait] [--interval D]`. Without --wait it checks once and fails if a
// check fails; with --wait it retries until every check passes.
func Health(ctx context.Context, env *verb.Env, args []string) error {
	fs := env.FlagSet("health")
	wait := fs.Bool("wait", false, "retry until every check passes (or the verb is stopped)")
	cfg := healthgate.DefaultConfig()
	fs.DurationVar(&cfg.Interval, "interval", cfg.Interval, "pause between rounds with --wait")
	fs.StringVar(&cfg.Root, "root", cfg.Root, "root of the node's file system (for tests)")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return verb.Usagef("health takes no arguments")
	}
	cfg.Log = env.Log
	if err := cfg.Validate(); err != nil {
		return verb.Usagef("%v", err)
	}
	checks := healthgate.Checks()
	var results []healthgate.Result
	var err error
	if *wait {
		results, err = healthgate.Wait(ctx, cfg, checks)
	} else {
		results = healthgate.Once(ctx, cfg, checks)
	}
	for _, r := range results {
		status := "ok"
		if r.Err != nil {
			status = "FAIL: " + r.Err.Error()
		}
		fmt.Fprintf(env.Stdout, "shoal health: %s: %s\n", r.Name, status)
	}
	if err != nil {
		return err
	}
	if failed := healthgate.Failed(results); len(failed) > 0 {
		return fmt.Errorf("%d of %d health checks failed", len(failed), len(results))
	}
	_, err = fmt.Fprintf(env.Stdout, "shoal health: ok (%d checks passed)\n", len(results))
	return err
}
