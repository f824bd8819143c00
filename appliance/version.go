package appliance

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/shoal-hci/shoal/appliance/internal/buildinfo"
	"github.com/shoal-hci/shoal/appliance/internal/verb"
)

// Version prints the binary's version, commit and Go version.
func Version(ctx context.Context, env *verb.Env, args []string) error {
	fs := env.FlagSet("version")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return verb.Usagef("version takes no arguments")
	}
	info := buildinfo.Get()
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(info)
	}
	_, err := fmt.Fprintln(env.Stdout, info)
	return err
}
