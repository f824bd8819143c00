package main

import (
	"strings"
	"testing"
)

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-transport", "carrier-pigeon"}, {"-no-such-flag"}} {
		err := run(args)
		if err == nil {
			t.Errorf("run(%q) accepted bad flags", args)
			continue
		}
		if strings.Contains(strings.Join(args, " "), "transport") && !strings.Contains(err.Error(), "auto, vsock or serial") {
			t.Errorf("run(%q): %v; want the choices named", args, err)
		}
	}
}

func TestRunVersion(t *testing.T) {
	if err := run([]string{"-version"}); err != nil {
		t.Errorf("-version: %v", err)
	}
}
