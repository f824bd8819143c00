// Command shoal-image builds the Shoal appliance image and its signed update
// bundles. `shoal-image help` lists the commands.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	imagebuild "github.com/shoal-hci/shoal/image-build"
	"github.com/shoal-hci/shoal/image-build/bundle"
)

const usage = `shoal-image: builds the Shoal appliance image and update bundles.

  shoal-image build  [--out DIR] [--version V] [--shoal PATH] [--cache DIR] [--update-key PUB]
  shoal-image bundle [--from DIR] [--version V] [--key PRIVATE] [--out FILE]
  shoal-image verify --pub PUB BUNDLE
  shoal-image keygen --out PREFIX          (writes PREFIX.key and PREFIX.pub)

build needs root. The cache (default /var/cache/shoal-image) holds the
Debian base tree and, unless --update-key is given, a development update key pair.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "shoal-image: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	switch args[0] {
	case "build":
		return build(ctx, log, args[1:], stdout, stderr)
	case "bundle":
		return makeBundle(log, args[1:], stdout, stderr)
	case "verify":
		return verify(args[1:], stdout, stderr)
	case "keygen":
		return keygen(args[1:], stdout, stderr)
	default:
		return fmt.Errorf("unknown command %q; shoal-image help lists them", args[0])
	}
}

func build(ctx context.Context, log *slog.Logger, args []string, stdout, stderr io.Writer) error {
	cfg := imagebuild.DefaultConfig()
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.OutDir, "out", "out", "directory for the image and bundle parts")
	fs.StringVar(&cfg.Version, "version", "", "image version (default: the shoal binary's version)")
	fs.StringVar(&cfg.Shoal, "shoal", "bin/shoal", "the shoal binary to put in the image")
	fs.StringVar(&cfg.CacheDir, "cache", cfg.CacheDir, "cache directory (base trees, packages, dev keys)")
	updateKey := fs.String("update-key", "", "update bundles' public key file (default: CACHE/update.pub, made by keygen if missing)")
	fs.IntVar(&cfg.CompressionLevel, "zstd-level", cfg.CompressionLevel, "mksquashfs zstd level")
	verbose := fs.Bool("v", false, "log every command run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("build takes no arguments, got %q", fs.Args())
	}
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Log = log
	if cfg.Version == "" {
		v, err := binaryVersion(ctx, cfg.Shoal)
		if err != nil {
			return err
		}
		cfg.Version = v
	}
	pub, err := loadOrMakeKey(cfg.CacheDir, *updateKey, stdout)
	if err != nil {
		return err
	}
	cfg.UpdateKey = pub
	b, err := imagebuild.New(cfg)
	if err != nil {
		return err
	}
	res, err := b.Build(ctx)
	if err != nil {
		return err
	}
	printResult(stdout, cfg, res)
	return nil
}

func binaryVersion(ctx context.Context, shoal string) (string, error) {
	out, err := exec.CommandContext(ctx, shoal, "version", "--json").Output()
	if err != nil {
		return "", fmt.Errorf("ask %s its version (or pass --version): %w", shoal, err)
	}
	var info struct{ Version string }
	if err := json.Unmarshal(out, &info); err != nil || info.Version == "" {
		return "", fmt.Errorf("read %s version --json (or pass --version): %q", shoal, out)
	}
	return strings.ReplaceAll(info.Version, "+", "-"), nil
}

// loadOrMakeKey returns the public key to bake in: the file given, or the
// cache's development key, made on first use.
func loadOrMakeKey(cache, path string, stdout io.Writer) ([]byte, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("update key: %w", err)
		}
		if _, err := bundle.ParsePublicKey(b); err != nil {
			return nil, fmt.Errorf("update key %s: %w", path, err)
		}
		return b, nil
	}
	pubPath, privPath := filepath.Join(cache, "update.pub"), filepath.Join(cache, "update.key")
	if b, err := os.ReadFile(pubPath); err == nil {
		if _, err := bundle.ParsePublicKey(b); err != nil {
			return nil, fmt.Errorf("update key %s: %w", pubPath, err)
		}
		return b, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	pub, priv, err := bundle.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(privPath, priv, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "made a development update key pair %s / %s (use --update-key for a real one)\n", privPath, pubPath)
	return pub, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func printResult(w io.Writer, cfg imagebuild.Config, r imagebuild.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\nimage\t%s\n", r.Image)
	fmt.Fprintf(tw, "  size\t%s (%s allocated, sparse)\n", mib(r.ImageBytes), mib(r.ImageAllocated))
	fmt.Fprintf(tw, "  OS slot (root squashfs, zstd)\t%s of a %s slot (target ≤ 300 MiB)\n", mib(r.SquashfsBytes), mib(r.SlotBytes))
	fmt.Fprintf(tw, "  UKI (kernel + initramfs)\t%s each, %s and %s\n", mib(r.UKIBytes), r.UKIs["a"], r.UKIs["b"])
	fmt.Fprintf(tw, "  ESP entry\tEFI/Linux/%s\n", r.ESPName)
	base := "from cache"
	if r.BaseBuilt {
		base = "built"
	}
	fmt.Fprintf(tw, "build time\t%s (base %s in %s)\n", r.Total.Round(100*time.Millisecond), base, r.BaseTime.Round(100*time.Millisecond))
	fmt.Fprintf(tw, "what the root holds (uncompressed)\t\n")
	for _, p := range r.Contents {
		fmt.Fprintf(tw, "  %s\t%s\n", p.Name, mib(p.Bytes))
	}
	tw.Flush()
	for _, top := range r.Contents[min(1, len(r.Contents)):] {
		if top.Name == "everything else" || r.Contents[0].Bytes == 0 {
			continue
		}
		fmt.Fprintf(w, "dominated by %s: %.0f%% of the uncompressed root\n", top.Name, 100*float64(top.Bytes)/float64(r.Contents[0].Bytes))
		break
	}
}

func makeBundle(log *slog.Logger, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bundle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "out", "build output directory")
	version := fs.String("version", "", "version to bundle (default: the only one in --from)")
	key := fs.String("key", "/var/cache/shoal-image/update.key", "private update key")
	out := fs.String("out", "", "bundle file (default: FROM/shoal-VERSION.bundle)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version == "" {
		matches, _ := filepath.Glob(filepath.Join(*from, "shoal-*.root.squashfs"))
		if len(matches) != 1 {
			return fmt.Errorf("found %d builds in %s; say which with --version", len(matches), *from)
		}
		*version = strings.TrimSuffix(strings.TrimPrefix(filepath.Base(matches[0]), "shoal-"), ".root.squashfs")
	}
	kb, err := os.ReadFile(*key)
	if err != nil {
		return fmt.Errorf("private key: %w", err)
	}
	priv, err := bundle.ParsePrivateKey(kb)
	if err != nil {
		return fmt.Errorf("private key %s: %w", *key, err)
	}
	if *out == "" {
		*out = filepath.Join(*from, "shoal-"+*version+".bundle")
	}
	v := *version
	sources := []bundle.Source{
		{Name: bundle.RootName, Path: filepath.Join(*from, "shoal-"+v+".root.squashfs")},
		{Name: bundle.UKIName("a"), Path: filepath.Join(*from, "shoal-"+v+"-a.efi")},
		{Name: bundle.UKIName("b"), Path: filepath.Join(*from, "shoal-"+v+"-b.efi")},
	}
	f, err := os.Create(*out + ".part")
	if err != nil {
		return err
	}
	m, err := bundle.Write(f, priv, v, sources)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*out + ".part")
		return err
	}
	if err := os.Rename(*out+".part", *out); err != nil {
		return err
	}
	st, _ := os.Stat(*out)
	fmt.Fprintf(stdout, "bundle %s: version %s, %d files, %s\n", *out, m.Version, len(m.Files), mib(st.Size()))
	return nil
}

func verify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pubPath := fs.String("pub", "/var/cache/shoal-image/update.pub", "public update key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("verify takes one bundle file")
	}
	pb, err := os.ReadFile(*pubPath)
	if err != nil {
		return err
	}
	pub, err := bundle.ParsePublicKey(pb)
	if err != nil {
		return err
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	dir, err := os.MkdirTemp("", "shoal-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	m, err := bundle.Extract(f, pub, dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bundle %s: good signature, version %s, %d files match\n", fs.Arg(0), m.Version, len(m.Files))
	return nil
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	prefix := fs.String("out", "", "writes PREFIX.key (private, 0600) and PREFIX.pub")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *prefix == "" {
		return errors.New("keygen needs --out PREFIX")
	}
	for _, p := range []string{*prefix + ".key", *prefix + ".pub"} {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists; not overwriting a key", p)
		}
	}
	pub, priv, err := bundle.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := os.WriteFile(*prefix+".key", priv, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(*prefix+".pub", pub, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s.key (keep it secret) and %s.pub (give it to shoal-image build --update-key)\n", *prefix, *prefix)
	return nil
}
