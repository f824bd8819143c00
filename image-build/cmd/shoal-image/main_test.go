package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeygenBundleVerify(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	prefix := filepath.Join(dir, "k")
	if err := run(ctx, []string{"keygen", "--out", prefix}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"keygen", "--out", prefix}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("second keygen: %v", err)
	}
	if st, err := os.Stat(prefix + ".key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private key: %v %v", st, err)
	}

	out := filepath.Join(dir, "out")
	os.MkdirAll(out, 0o755)
	for _, name := range []string{"shoal-1.0.root.squashfs", "shoal-1.0-a.efi", "shoal-1.0-b.efi"} {
		if err := os.WriteFile(filepath.Join(out, name), []byte("content of "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stdout.Reset()
	if err := run(ctx, []string{"bundle", "--from", out, "--key", prefix + ".key"}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(out, "shoal-1.0.bundle")
	if !strings.Contains(stdout.String(), "version 1.0, 3 files") {
		t.Errorf("bundle said %q", stdout.String())
	}
	stdout.Reset()
	if err := run(ctx, []string{"verify", "--pub", prefix + ".pub", b}, &stdout, &stderr); err != nil {
		t.Fatalf("verify: %v", err)
	}

	// Another key, or one flipped byte, and verify refuses.
	other := filepath.Join(dir, "other")
	if err := run(ctx, []string{"keygen", "--out", other}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"verify", "--pub", other + ".pub", b}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("verify with another key: %v", err)
	}
	data, _ := os.ReadFile(b)
	i := bytes.Index(data, []byte("content of shoal-1.0-a.efi"))
	data[i] ^= 1
	os.WriteFile(b, data, 0o644)
	if err := run(ctx, []string{"verify", "--pub", prefix + ".pub", b}, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("verify of a tampered bundle: %v", err)
	}
}

func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"frob"}, &stdout, &stderr); err == nil {
		t.Error("unknown command accepted")
	}
	if err := run(context.Background(), nil, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "shoal-image build") {
		t.Errorf("usage: %v %q", err, stdout.String())
	}
}
