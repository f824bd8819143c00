// Package buildinfo reports what this binary is: its version, the commit it
// was built from and the Go toolchain. Version and Commit are set at link
// time by the Makefile (-X); a plain `go build` falls back to the module's
// VCS stamp where Go recorded one.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set with -ldflags "-X github.com/shoal-hci/shoal/appliance/internal/buildinfo.Version=…".
var (
	Version = "dev"
	Commit  = ""
)

// Info is what `shoal version` prints.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// Get returns the build information of the running binary.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if info.Commit == "" {
		info.Commit = vcsRevision()
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

func vcsRevision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}

// String is the one-line form: "shoal 0.1.0 (commit abc123, go1.26.8)".
func (i Info) String() string {
	return fmt.Sprintf("shoal %s (commit %s, %s)", i.Version, i.Commit, i.GoVersion)
}
