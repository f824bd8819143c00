// Package hostcmd runs the external tools of the image build (debootstrap,
// mksquashfs, objcopy, mtools, sfdisk) with their output logged and their
// stderr folded into the error, so a failed step says why.
package hostcmd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
)

// Run runs name with args and returns its stdout. On failure the error
// holds the command and the tail of its stderr.
func Run(ctx context.Context, log *slog.Logger, name string, args ...string) ([]byte, error) {
	return RunEnv(ctx, log, nil, name, args...)
}

// RunEnv is Run with extra environment variables (KEY=VALUE) added to the
// process's own.
func RunEnv(ctx context.Context, log *slog.Logger, env []string, name string, args ...string) ([]byte, error) {
	return run(ctx, log, env, nil, name, args...)
}

// RunInput is Run with stdin read from in.
func RunInput(ctx context.Context, log *slog.Logger, in io.Reader, name string, args ...string) ([]byte, error) {
	return run(ctx, log, nil, in, name, args...)
}

func run(ctx context.Context, log *slog.Logger, env []string, in io.Reader, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = in
	if env != nil {
		cmd.Env = append(cmd.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if log != nil {
		log.Debug("run", "cmd", name, "args", strings.Join(args, " "))
	}
	if err := cmd.Run(); err != nil {
		msg := stderr.String()
		if strings.TrimSpace(msg) == "" {
			msg = stdout.String()
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(short(args), " "), err, tail(msg, 2000))
	}
	return stdout.Bytes(), nil
}

// Need checks that every tool is on PATH and says which Debian package
// brings the missing ones.
func Need(tools map[string]string) error {
	var missing []string
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools: %s; install them (make deps does)", strings.Join(missing, ", "))
	}
	return nil
}

func short(args []string) []string {
	if len(args) > 12 {
		return append(args[:12:12], "…")
	}
	return args
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
