package units

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

//go:embed *.service boot-complete.target.d/*.conf
var files embed.FS

// Where units and their enablement go inside a root tree.
const (
	UnitDir   = "usr/lib/systemd/system"
	EnableDir = "etc/systemd/system"
)

// Daemons are the daemon verbs of the shoal binary that have a unit, in
// start order.
var Daemons = []string{"netd", "peer", "scribe", "hypervisor"}

// File is one regular file of the installed tree.
type File struct {
	Path    string // relative to the root: usr/lib/systemd/system/shoal-peer.service
	Content []byte
}

// Link is one enablement symlink (what `systemctl enable` would make).
type Link struct {
	Path   string // relative to the root: etc/systemd/system/multi-user.target.wants/shoal-peer.service
	Target string // absolute inside the root: /usr/lib/systemd/system/shoal-peer.service
}

// Plan is everything Install writes, in a stable order.
type Plan struct {
	Files []File
	Links []Link
}

// UnitName returns the unit of a daemon verb: "peer" → "shoal-peer.service".
func UnitName(daemon string) string { return "shoal-" + daemon + ".service" }

// NewPlan returns the files and links for a binary that has the given
// daemon verbs. Units of daemons the binary lacks are left out (their
// After=/Wants= references are harmless); shoal-health.service and the
// boot-complete.target drop-in are always in. An unknown daemon is an error.
func NewPlan(daemons []string) (Plan, error) {
	for _, d := range daemons {
		if !slices.Contains(Daemons, d) {
			return Plan{}, fmt.Errorf("no unit for daemon %q: known daemons are %s", d, strings.Join(Daemons, ", "))
		}
	}
	names := []string{}
	for _, d := range Daemons {
		if slices.Contains(daemons, d) {
			names = append(names, UnitName(d))
		}
	}
	names = append(names, "shoal-health.service")

	var p Plan
	for _, name := range names {
		content, err := files.ReadFile(name)
		if err != nil {
			return Plan{}, fmt.Errorf("read embedded unit %s: %w", name, err)
		}
		p.Files = append(p.Files, File{Path: path.Join(UnitDir, name), Content: content})
		for _, target := range installTargets(content) {
			p.Links = append(p.Links, Link{
				Path:   path.Join(EnableDir, target.dir, name),
				Target: "/" + path.Join(UnitDir, name),
			})
		}
	}
	dropins, err := fs.Glob(files, "*.d/*.conf")
	if err != nil {
		return Plan{}, fmt.Errorf("list embedded drop-ins: %w", err)
	}
	for _, name := range dropins {
		content, err := files.ReadFile(name)
		if err != nil {
			return Plan{}, fmt.Errorf("read embedded drop-in %s: %w", name, err)
		}
		p.Files = append(p.Files, File{Path: path.Join(UnitDir, name), Content: content})
	}
	return p, nil
}

type installTarget struct{ dir string }

// installTargets reads the [Install] section: WantedBy=X gives X.wants,
// RequiredBy=X gives X.requires.
func installTargets(unit []byte) []installTarget {
	var out []installTarget
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		if section != "[Install]" {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		suffix := map[string]string{"WantedBy": ".wants", "RequiredBy": ".requires"}[strings.TrimSpace(key)]
		if suffix == "" {
			continue
		}
		for _, t := range strings.Fields(value) {
			out = append(out, installTarget{dir: t + suffix})
		}
	}
	return out
}

// Install writes the plan into the tree at root, replacing what is there
// (it is idempotent). root must be an existing directory.
func Install(root string, p Plan) error {
	st, err := os.Stat(root)
	if err != nil {
		return fmt.Errorf("install units: root %q: %w", root, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("install units: root %q is not a directory", root)
	}
	for _, f := range p.Files {
		dst := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("install unit %s: %w", f.Path, err)
		}
		// Write beside and rename: a tree made of hard links to a cached
		// base (the image builder's) must never be written through.
		tmp := dst + ".shoal-new"
		if err := os.WriteFile(tmp, f.Content, 0o644); err != nil {
			return fmt.Errorf("install unit %s: %w", f.Path, err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("install unit %s: %w", f.Path, err)
		}
	}
	for _, l := range p.Links {
		dst := filepath.Join(root, filepath.FromSlash(l.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("enable %s: %w", l.Path, err)
		}
		if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("enable %s: %w", l.Path, err)
		}
		if err := os.Symlink(l.Target, dst); err != nil {
			return fmt.Errorf("enable %s: %w", l.Path, err)
		}
	}
	return nil
}
