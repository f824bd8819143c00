// Package gossiplog bridges the standard-library loggers that serf and
// memberlist write to ("[WARN] memberlist: …") into log/slog, keeping the
// level they put in the line and the component that wrote it.
package gossiplog

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// New returns a *log.Logger for serf.Config.Logger and
// memberlist.Config.Logger that writes into l.
func New(l *slog.Logger) *log.Logger {
	return log.New(writer{l}, "", 0)
}

type writer struct{ l *slog.Logger }

var levels = []struct {
	tag   string
	level slog.Level
}{
	{"[TRACE]", slog.LevelDebug - 4},
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

// Write logs one line. serf and memberlist write one message per call.
func (w writer) Write(p []byte) (int, error) {
	n := len(p)
	msg := bytes.TrimSpace(p)
	level := slog.LevelInfo
	for _, lv := range levels {
		if rest, ok := bytes.CutPrefix(msg, []byte(lv.tag)); ok {
			level, msg = lv.level, bytes.TrimSpace(rest)
			break
		}
	}
	component := "gossip"
	if i := bytes.Index(msg, []byte(": ")); i > 0 && i < 16 && bytes.IndexByte(msg[:i], ' ') < 0 {
		component, msg = string(msg[:i]), msg[i+2:]
	}
	if w.l.Enabled(context.Background(), level) {
		w.l.Log(context.Background(), level, string(msg), "component", component)
	}
	return n, nil
}
