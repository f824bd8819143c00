// Package verb is the plumbing of the multi-call shoal binary: a table of
// verbs (daemons and CLI commands, possibly two words like "cluster join"),
// dispatch from os.Args, `shoal help`, the flags every verb shares
// (--log-format, --log-level) and exit codes. It knows nothing of what the
// verbs do; appliance/cmd/shoal maps names to functions.
package verb

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Func runs one verb. args are what follows the verb's name; flags are
// parsed by the verb itself with env.FlagSet and env.Parse.
type Func func(ctx context.Context, env *Env, args []string) error

// Verb is one entry of the table.
type Verb struct {
	Name    string // one or two words: "version", "cluster join"
	Summary string // one line for `shoal help`
	Daemon  bool   // a long-running unit (`shoal peer`), not a command
	Run     Func
}

// UsageError is returned for bad command lines; it exits with status 2.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef builds a UsageError.
func Usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// Main dispatches os.Args over verbs, adding `help`, and returns the exit
// code. It cancels the context on SIGINT and SIGTERM.
func Main(verbs []Verb) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Dispatch(ctx, verbs, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// Dispatch is Main without the process: it runs the verb named by args
// and returns the exit code.
func Dispatch(ctx context.Context, verbs []Verb, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := &Env{Stdin: stdin, Stdout: stdout, Stderr: stderr, logFormat: "text", logLevel: "info"}
	all := append([]Verb{{Name: "help", Summary: "list every verb with one line each (--json for machines)"}}, verbs...)
	all[0].Run = func(ctx context.Context, env *Env, args []string) error { return help(env, all, args) }

	// Shared flags may also come before the verb: shoal --log-format json peer.
	global := env.FlagSet("shoal")
	global.Usage = func() { help(env, all, nil) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if err := env.configureLog(); err != nil {
		fmt.Fprintf(stderr, "shoal: %v\n", err)
		return ExitUsage
	}
	args = global.Args()
	if len(args) == 0 {
		help(env, all, nil)
		return ExitUsage
	}
	v, rest, ok := lookup(all, args)
	if !ok {
		fmt.Fprintf(stderr, "shoal: unknown verb %q; `shoal help` lists them\n", strings.Join(args[:min(2, len(args))], " "))
		return ExitUsage
	}
	env.Verb = v.Name
	err := v.Run(ctx, env, rest)
	var usage *UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "shoal %s: %v\n", v.Name, err)
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "shoal %s: %v\n", v.Name, err)
		return ExitError
	}
}

// lookup finds the verb named by the longest prefix of args (two words
// before one).
func lookup(verbs []Verb, args []string) (Verb, []string, bool) {
	if len(args) >= 2 {
		for _, v := range verbs {
			if v.Name == args[0]+" "+args[1] {
				return v, args[2:], true
			}
		}
	}
	for _, v := range verbs {
		if v.Name == args[0] {
			return v, args[1:], true
		}
	}
	return Verb{}, nil, false
}

// Env is what a verb gets besides its arguments.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Verb           string       // the verb's name, for messages
	Log            *slog.Logger // set from --log-format and --log-level

	logFormat, logLevel string
}

// FlagSet returns a flag set for a verb that already holds the shared
// flags. Use env.Parse to parse it.
func (e *Env) FlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.Stderr)
	fs.StringVar(&e.logFormat, "log-format", e.logFormat, "log format: text or json")
	fs.StringVar(&e.logLevel, "log-level", e.logLevel, "log level: debug, info, warn or error")
	return fs
}

// Parse parses args into fs and applies the shared flags. Bad flags come
// back as a UsageError; -h comes back as flag.ErrHelp.
func (e *Env) Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{Msg: err.Error()}
	}
	if err := e.configureLog(); err != nil {
		return &UsageError{Msg: err.Error()}
	}
	return nil
}

func (e *Env) configureLog() error {
	l, err := NewLogger(e.Stderr, e.logFormat, e.logLevel)
	if err != nil {
		return err
	}
	e.Log = l
	return nil
}
