package gossiplog

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBridgeKeepsLevelAndComponent(t *testing.T) {
	tests := []struct {
		line string
		want map[string]any
	}{
		{"[WARN] memberlist: Was able to connect to node2 but other probes failed\n",
			map[string]any{"level": "WARN", "msg": "Was able to connect to node2 but other probes failed", "component": "memberlist"}},
		{"[ERR] serf: Failed to join: dial tcp: refused",
			map[string]any{"level": "ERROR", "msg": "Failed to join: dial tcp: refused", "component": "serf"}},
		{"[INFO] serf: EventMemberJoin: node1 10.0.0.1",
			map[string]any{"level": "INFO", "msg": "EventMemberJoin: node1 10.0.0.1", "component": "serf"}},
		{"no prefix at all", map[string]any{"level": "INFO", "msg": "no prefix at all", "component": "gossip"}},
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1234",
			map[string]any{"level": "DEBUG", "msg": "Stream connection from=127.0.0.1:1234", "component": "memberlist"}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		l := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{
			Level: slog.LevelDebug,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			},
		}))
		New(l).Print(tt.line)
		var got map[string]any
		if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
			t.Fatalf("%q: output %q is not JSON: %v", tt.line, buf.String(), err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%q: (-want +got)\n%s", tt.line, diff)
		}
	}
}

func TestBridgeDropsBelowLevel(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	New(l).Print("[DEBUG] memberlist: chatter")
	if buf.Len() != 0 {
		t.Errorf("debug line logged at warn level: %q", buf.String())
	}
}
