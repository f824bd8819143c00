package verb

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
)

type helpEntry struct {
	Name    string `json:"name"`
	Summary string `json:"summary"`
	Daemon  bool   `json:"daemon"`
}

// help prints every verb with its summary, daemons first. With --json it
// prints the table as JSON (the qa harness reads it to know which daemons
// this binary has).
func help(env *Env, verbs []Verb, args []string) error {
	fs := env.FlagSet("help")
	asJSON := fs.Bool("json", false, "print the verb table as JSON")
	if err := env.Parse(fs, args); err != nil {
		return err
	}
	if *asJSON {
		entries := make([]helpEntry, 0, len(verbs))
		for _, v := range verbs {
			entries = append(entries, helpEntry{v.Name, v.Summary, v.Daemon})
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	fmt.Fprintln(env.Stdout, "shoal: the Shoal appliance binary. Usage: shoal [--log-format text|json] [--log-level LEVEL] VERB [ARGS]")
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	for _, daemon := range []bool{true, false} {
		first := true
		for _, v := range verbs {
			if v.Daemon != daemon {
				continue
			}
			if first {
				title := "\nCommands:"
				if daemon {
					title = "\nDaemons (one systemd unit each):"
				}
				fmt.Fprintln(tw, title)
				first = false
			}
			fmt.Fprintf(tw, "  %s\t%s\n", v.Name, v.Summary)
		}
	}
	fmt.Fprintln(tw, "\n`shoal VERB -h` shows a verb's flags.")
	return tw.Flush()
}
