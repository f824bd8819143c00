package verb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testVerbs(calls *[]string) []Verb {
	record := func(name string) Func {
		return func(ctx context.Context, env *Env, args []string) error {
			fs := env.FlagSet(name)
			fail := fs.Bool("fail", false, "return an error")
			if err := env.Parse(fs, args); err != nil {
				return err
			}
			env.Log.Info("ran", "verb", name)
			*calls = append(*calls, name+" "+strings.Join(fs.Args(), ","))
			if *fail {
				return errors.New("it broke")
			}
			return nil
		}
	}
	return []Verb{
		{Name: "peer", Summary: "run the membership daemon", Daemon: true, Run: record("peer")},
		{Name: "cluster", Summary: "show the cluster", Run: record("cluster")},
		{Name: "cluster join", Summary: "join a cluster", Run: record("cluster join")},
	}
}

func TestDispatch(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		wantCalls []string
		wantErr   string // substring of stderr
	}{
		{"one word", []string{"peer"}, ExitOK, []string{"peer "}, ""},
		{"two words win over one", []string{"cluster", "join", "10.0.0.1"}, ExitOK, []string{"cluster join 10.0.0.1"}, ""},
		{"one word with an argument", []string{"cluster", "x"}, ExitOK, []string{"cluster x"}, ""},
		{"unknown verb", []string{"frobnicate"}, ExitUsage, nil, `unknown verb "frobnicate"`},
		{"no verb", nil, ExitUsage, nil, ""},
		{"bad flag", []string{"peer", "--nope"}, ExitUsage, nil, "flag provided but not defined"},
		{"verb error", []string{"peer", "--fail"}, ExitError, []string{"peer "}, "shoal peer: it broke"},
		{"bad log format", []string{"--log-format", "xml", "peer"}, ExitUsage, nil, `bad --log-format "xml"`},
		{"bad log level after verb", []string{"peer", "--log-level", "loud"}, ExitUsage, nil, `bad --log-level "loud"`},
		{"help flag", []string{"peer", "-h"}, ExitOK, nil, "-log-format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []string
			var stdout, stderr bytes.Buffer
			code := Dispatch(context.Background(), testVerbs(&calls), tt.args, nil, &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tt.wantCode, stderr.String())
			}
			if diff := cmp.Diff(tt.wantCalls, calls); diff != "" {
				t.Errorf("calls (-want +got)\n%s", diff)
			}
			if !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantErr)
			}
		})
	}
}

func TestLogFormatJSONBeforeOrAfterVerb(t *testing.T) {
	for _, args := range [][]string{
		{"--log-format", "json", "peer"},
		{"peer", "--log-format=json"},
	} {
		var calls []string
		var stdout, stderr bytes.Buffer
		if code := Dispatch(context.Background(), testVerbs(&calls), args, nil, &stdout, &stderr); code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, code, stderr.String())
		}
		var line map[string]any
		if err := json.Unmarshal(stderr.Bytes(), &line); err != nil {
			t.Fatalf("%v: log %q is not JSON: %v", args, stderr.String(), err)
		}
		if line["msg"] != "ran" || line["verb"] != "peer" {
			t.Errorf("%v: log line = %v", args, line)
		}
	}
}

func TestHelpListsEveryVerb(t *testing.T) {
	var calls []string
	var stdout, stderr bytes.Buffer
	if code := Dispatch(context.Background(), testVerbs(&calls), []string{"help"}, nil, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"peer", "run the membership daemon", "cluster join", "join a cluster", "help", "Daemons", "Commands"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help output lacks %q:\n%s", want, stdout.String())
		}
	}

	stdout.Reset()
	if code := Dispatch(context.Background(), testVerbs(&calls), []string{"help", "--json"}, nil, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var got []helpEntry
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("help --json: %v\n%s", err, stdout.String())
	}
	want := []helpEntry{
		{"help", "list every verb with one line each (--json for machines)", false},
		{"peer", "run the membership daemon", true},
		{"cluster", "show the cluster", false},
		{"cluster join", "join a cluster", false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("help --json (-want +got)\n%s", diff)
	}
}
