package appliance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/peer/client"
)

// The `shoal state …` verbs are a debug tool: they read and write raw
// records of the cluster state through the local API. Operators use them
// when asked to (or to compare digests); components use peer/client.

// stateArgs parses flags before and after positional arguments and
// returns the positional ones, checking there are between lo and hi
// (hi < 0: no upper bound).
func stateArgs(env *verb.Env, fs *flagSetWithSocket, args []string, lo, hi int) ([]string, error) {
	var pos []string
	for {
		if err := env.Parse(fs.FlagSet, args); err != nil {
			return nil, err
		}
		rest := fs.FlagSet.Args()
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < lo || (hi >= 0 && len(pos) > hi) {
		want := strconv.Itoa(lo)
		switch {
		case hi < 0:
			want = "at least " + want
		case hi != lo:
			want = fmt.Sprintf("%d to %d", lo, hi)
		}
		return nil, verb.Usagef("%s takes %s argument(s), got %d", fs.Name(), want, len(pos))
	}
	return pos, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fieldText renders a field for humans: a register's value, a set as
// [a,b], a counter as its number.
func fieldText(f client.StateField) string {
	switch f.Kind {
	case client.KindSet:
		return "[" + strings.Join(f.Elems, ",") + "]"
	case client.KindCounter:
		return strconv.FormatInt(f.Count, 10)
	}
	return f.Value
}

// fieldsText renders a record's fields as name=value, sorted by name.
func fieldsText(r client.StateRecord) string {
	names := make([]string, 0, len(r.Fields))
	for n := range r.Fields {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + fieldText(r.Fields[n])
	}
	return strings.Join(parts, " ")
}

// StateGet prints one record of the cluster state (debug).
func StateGet(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "state get")
	asJSON := fs.Bool("json", false, "print as JSON")
	pos, err := stateArgs(env, fs, args, 1, 1)
	if err != nil {
		return err
	}
	r, err := fs.client().GetState(ctx, pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, r)
	}
	names := make([]string, 0, len(r.Fields))
	for n := range r.Fields {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(env.Stdout, "%s=%s\n", n, fieldText(r.Fields[n]))
	}
	return nil
}

// StateLs lists the records under a key prefix (debug).
func StateLs(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "state ls")
	asJSON := fs.Bool("json", false, "print as JSON, with the revision to watch from")
	pos, err := stateArgs(env, fs, args, 0, 1)
	if err != nil {
		return err
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	l, err := fs.client().ListState(ctx, prefix)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, l)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tFIELDS")
	for _, r := range l.Records {
		fmt.Fprintf(tw, "%s\t%s\n", r.Key, fieldsText(r))
	}
	return tw.Flush()
}

// StatePut writes register fields of a record: put KEY field=value ...
// (debug). Other fields of the record are untouched; field= clears one.
func StatePut(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "state put")
	asJSON := fs.Bool("json", false, "print the change made (origin, seq) as JSON")
	pos, err := stateArgs(env, fs, args, 2, -1)
	if err != nil {
		return err
	}
	fields := map[string]string{}
	for _, a := range pos[1:] {
		name, value, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return verb.Usagef("state put: %q is not field=value", a)
		}
		fields[name] = value
	}
	w, err := fs.client().PutState(ctx, pos[0], fields)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, w)
	}
	return nil
}

// StateRm deletes a record (debug).
func StateRm(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "state rm")
	asJSON := fs.Bool("json", false, "print the change made (origin, seq) as JSON")
	pos, err := stateArgs(env, fs, args, 1, 1)
	if err != nil {
		return err
	}
	w, err := fs.client().DeleteState(ctx, pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, w)
	}
	return nil
}

// StateWatch prints every change under a prefix as it happens (debug):
// from now, or after revision --from.
func StateWatch(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "state watch")
	asJSON := fs.Bool("json", false, "print one JSON object per event")
	from := fs.Int64("from", -1, "print the changes after this revision (default: from now on)")
	count := fs.Int("count", 0, "stop after this many events (0: run until interrupted)")
	pos, err := stateArgs(env, fs, args, 0, 1)
	if err != nil {
		return err
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	c := fs.client()
	rev := uint64(*from)
	if *from < 0 {
		l, err := c.ListState(ctx, prefix)
		if err != nil {
			return err
		}
		rev = l.Rev
	}
	stop := errors.New("count reached")
	n := 0
	err = c.WatchState(ctx, prefix, rev, func(ev client.StateEvent) error {
		if *asJSON {
			b, _ := json.Marshal(ev)
			fmt.Fprintf(env.Stdout, "%s\n", b)
		} else if ev.Record == nil {
			fmt.Fprintf(env.Stdout, "%d\tdelete\t%s\n", ev.Rev, ev.Key)
		} else {
			fmt.Fprintf(env.Stdout, "%d\tput\t%s\t%s\n", ev.Rev, ev.Key, fieldsText(*ev.Record))
		}
		if n++; *count > 0 && n >= *count {
			return stop
		}
		return nil
	})
	if errors.Is(err, stop) {
		return nil
	}
	if errors.Is(err, client.ErrStateResync) {
		return fmt.Errorf("%w; watch again without --from, or from the rev that `shoal state ls --json %s` prints", err, prefix)
	}
	return err
}

// StateDigest prints the node's state digest: equal on nodes that merged
// the same changes (debug).
func StateDigest(ctx context.Context, env *verb.Env, args []string) error {
	fs := socketFlag(env, "state digest")
	asJSON := fs.Bool("json", false, "print as JSON, with the version vector")
	if _, err := stateArgs(env, fs, args, 0, 0); err != nil {
		return err
	}
	d, err := fs.client().DigestState(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(env.Stdout, d)
	}
	fmt.Fprintf(env.Stdout, "%s  records %d  rev %d\n", d.Digest, d.Records, d.Rev)
	return nil
}
