package qa_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The guardrails of DESIGN.md §1 and STYLE.md, checked over the whole
// module: the import graph between subsystems, one package doc per
// package, and package names.

const module = "github.com/shoal-hci/shoal"

// mayImport is the declared DAG between top-level subsystems: a package
// in the key's tree may import packages of the listed subsystems (and of
// its own tree). peer is the base; netd, scribe and hypervisor see only
// peer; only appliance sees everything; nothing imports appliance or qa.
var mayImport = map[string][]string{
	"peer":        {},
	"netd":        {"peer"},
	"scribe":      {"peer"},
	"hypervisor":  {"peer"},
	"image-build": {},
	"appliance":   {"peer", "netd", "scribe", "hypervisor", "image-build"},
	"qa":          {"peer", "netd", "scribe", "hypervisor"},
}

var bannedNames = []string{"util", "utils", "common", "helper", "helpers", "misc", "types", "lib"}

type listedPackage struct {
	ImportPath   string
	Name         string
	Dir          string
	GoFiles      []string
	CgoFiles     []string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	var all []listedPackage
	// Scenarios hide behind the qa tag: list with and without it.
	for _, tags := range []string{"", "qa"} {
		cmd := exec.Command("go", "list", "-e", "-json", "-tags="+tags, "./...")
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, stderr.String())
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var p listedPackage
			if err := dec.Decode(&p); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("decode go list output: %v", err)
			}
			all = append(all, p)
		}
	}
	if len(all) == 0 {
		t.Fatal("go list found no packages")
	}
	return all
}

// subsystem returns the top-level folder of a module import path, or ""
// for paths outside the module.
func subsystem(importPath string) string {
	rest, ok := strings.CutPrefix(importPath, module+"/")
	if !ok {
		return ""
	}
	top, _, _ := strings.Cut(rest, "/")
	return top
}

func TestImportGraphFollowsDesign(t *testing.T) {
	for _, problem := range importProblems(listPackages(t)) {
		t.Error(problem)
	}
}

// TestImportGuardrailCatches proves the check above is not vacuous.
func TestImportGuardrailCatches(t *testing.T) {
	bad := []listedPackage{
		{ImportPath: module + "/scribe/internal/chunk", Imports: []string{module + "/netd"}},
		{ImportPath: module + "/peer", TestImports: []string{module + "/qa"}},
		{ImportPath: module + "/hypervisor", XTestImports: []string{module + "/appliance"}},
		{ImportPath: module + "/tools/x"},
		{ImportPath: module + "/netd", Imports: []string{module + "/peer/client", "fmt"}}, // allowed
	}
	if got := len(importProblems(bad)); got != 4 {
		t.Errorf("import guardrail found %d problems in 4 bad packages: %q", got, importProblems(bad))
	}
}

func importProblems(pkgs []listedPackage) []string {
	var problems []string
	for _, p := range pkgs {
		from := subsystem(p.ImportPath)
		allowed, known := mayImport[from]
		if !known {
			problems = append(problems, fmt.Sprintf("package %s lives in %q, which is not one of the subsystems of DESIGN.md §1", p.ImportPath, from))
			continue
		}
		for _, imp := range slices.Concat(p.Imports, p.TestImports, p.XTestImports) {
			to := subsystem(imp)
			if to == "" || to == from {
				continue
			}
			if !slices.Contains(allowed, to) {
				problems = append(problems, fmt.Sprintf("%s imports %s: %s may import only %v (DESIGN.md §1)", p.ImportPath, imp, from, allowed))
			}
		}
	}
	return problems
}

func TestEveryPackageHasExactlyOneDoc(t *testing.T) {
	seen := map[string]bool{}
	for _, p := range listPackages(t) {
		if seen[p.ImportPath] || len(p.GoFiles)+len(p.CgoFiles) == 0 {
			continue
		}
		seen[p.ImportPath] = true
		if problem := docProblem(t, p); problem != "" {
			t.Error(problem)
		}
	}
}

// TestDocGuardrailCatches proves the check above is not vacuous.
func TestDocGuardrailCatches(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.go": "// Package x does one thing.\npackage x\n",
		"b.go": "// Package x does it again.\npackage x\n",
		"c.go": "package x\n",
	}
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if docProblem(t, listedPackage{ImportPath: "two", Dir: dir, GoFiles: []string{"a.go", "b.go"}}) == "" {
		t.Error("two package docs passed the guardrail")
	}
	if docProblem(t, listedPackage{ImportPath: "none", Dir: dir, GoFiles: []string{"c.go"}}) == "" {
		t.Error("a package without a doc passed the guardrail")
	}
	if p := docProblem(t, listedPackage{ImportPath: "one", Dir: dir, GoFiles: []string{"a.go", "c.go"}}); p != "" {
		t.Errorf("a package with one doc failed the guardrail: %s", p)
	}
}

func docProblem(t *testing.T, p listedPackage) string {
	t.Helper()
	var docs []string
	fset := token.NewFileSet()
	for _, name := range slices.Concat(p.GoFiles, p.CgoFiles) {
		f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			docs = append(docs, name)
		}
	}
	switch len(docs) {
	case 0:
		return fmt.Sprintf("package %s has no package doc: say what it owns in a doc.go", p.ImportPath)
	case 1:
		return ""
	default:
		return fmt.Sprintf("package %s has %d package docs (%s): keep exactly one", p.ImportPath, len(docs), strings.Join(docs, ", "))
	}
}

func TestPackageNames(t *testing.T) {
	byName := map[string][]string{}
	for _, p := range listPackages(t) {
		if p.Name == "" || p.Name == "main" {
			continue
		}
		if slices.Contains(bannedNames, p.Name) {
			t.Errorf("package %s is named %q: name a package after what it provides (STYLE.md)", p.ImportPath, p.Name)
		}
		if !slices.Contains(byName[p.Name], p.ImportPath) {
			byName[p.Name] = append(byName[p.Name], p.ImportPath)
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if paths := byName[n]; len(paths) > 1 {
			t.Errorf("package name %q is used by %d packages (%s): names are unique across the repo (STYLE.md)", n, len(paths), strings.Join(paths, ", "))
		}
	}
}
