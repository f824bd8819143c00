package appliance

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVMBridge: --bridge wins ("none" and "" turn bridging off); without
// it, the bridge netd's status names; no status, or none named, is
// user-mode networking, said once in the log.
func TestVMBridge(t *testing.T) {
	dir := t.TempDir()
	withBridge := filepath.Join(dir, "net.json")
	noBridge := filepath.Join(dir, "net-nobridge.json")
	os.WriteFile(withBridge, []byte(`{"phase":"ready","lan":"br-lan","bridge":"br-lan","lan_port":"bond0"}`), 0o644)
	os.WriteFile(noBridge, []byte(`{"phase":"ready","lan":"bond0"}`), 0o644)
	tests := []struct {
		name   string
		given  bool
		flag   string
		status string
		want   string
		log    string
	}{
		{name: "netd's bridge", status: withBridge, want: "br-lan", log: "join netd's LAN bridge"},
		{name: "no status", status: filepath.Join(dir, "missing.json"), want: "", log: "user-mode"},
		{name: "status without bridge", status: noBridge, want: "", log: "names no LAN bridge"},
		{name: "given", given: true, flag: "br9", status: withBridge, want: "br9", log: "--bridge"},
		{name: "given none", given: true, flag: "none", status: withBridge, want: "", log: "user-mode"},
		{name: "given empty", given: true, flag: "", status: withBridge, want: "", log: "user-mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			got := vmBridge(slog.New(slog.NewTextHandler(&buf, nil)), tt.given, tt.flag, tt.status)
			if got != tt.want {
				t.Errorf("bridge %q, want %q", got, tt.want)
			}
			if strings.Count(buf.String(), "\n") != 1 || !strings.Contains(buf.String(), tt.log) {
				t.Errorf("log %q, want one line saying %q", buf.String(), tt.log)
			}
		})
	}
}
