package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
)

func TestVerbTable(t *testing.T) {
	seen := map[string]bool{"help": true}
	for _, v := range verbs {
		if v.Name == "" || v.Summary == "" || v.Run == nil {
			t.Errorf("verb %q lacks a name, a summary or a function", v.Name)
		}
		if seen[v.Name] {
			t.Errorf("verb %q is listed twice", v.Name)
		}
		seen[v.Name] = true
		if n := len(strings.Fields(v.Name)); n > 2 {
			t.Errorf("verb %q has %d words; verbs are one or two", v.Name, n)
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := verb.Dispatch(context.Background(), verbs, []string{"version", "--json"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("shoal version --json: exit %d: %s", code, stderr.String())
	}
	var info map[string]string
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil {
		t.Fatalf("version --json: %v: %q", err, stdout.String())
	}
	for _, k := range []string{"version", "commit", "go_version"} {
		if info[k] == "" {
			t.Errorf("version --json lacks %q: %v", k, info)
		}
	}
	if !strings.HasPrefix(info["go_version"], "go1.") {
		t.Errorf("go_version = %q", info["go_version"])
	}

	stdout.Reset()
	if code := verb.Dispatch(context.Background(), verbs, []string{"version", "extra"}, nil, &stdout, &stderr); code != verb.ExitUsage {
		t.Errorf("shoal version extra: exit %d, want %d", code, verb.ExitUsage)
	}
}
