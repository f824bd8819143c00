package qemu

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// migratePair starts a source VM and an incoming destination with the
// same spec, migrating over mutual TLS, and returns the destination's
// URI and the source's credentials.
func migratePair(t *testing.T, memMiB int, postcopy bool) (src, dst *VM, uri string, tls *MigrationTLS) {
	t.Helper()
	tls, dstTLS := tlsPair(t)
	src, dst, uri = migratePairTLS(t, memMiB, postcopy, dstTLS)
	return src, dst, uri, tls
}

// migratePairTLS is migratePair with the destination's credentials.
func migratePairTLS(t *testing.T, memMiB int, postcopy bool, dstTLS *MigrationTLS) (src, dst *VM, uri string) {
	t.Helper()
	host := testHost(t)
	tmp := t.TempDir()
	spec := tinySpec("mig", memMiB)
	src = startVM(t, host, filepath.Join(tmp, "src"), spec, false)
	dst = startVM(t, host, filepath.Join(tmp, "dst"), spec, true)
	uri, err := dst.Incoming(testCtx(t), "127.0.0.1:0", postcopy, dstTLS)
	if err != nil {
		t.Fatal(err)
	}
	if uri == "tcp:127.0.0.1:0" {
		t.Fatalf("Incoming did not report the port it listens on: %s", uri)
	}
	return src, dst, uri
}

func TestMigrate(t *testing.T) {
	for _, postcopy := range []bool{false, true} {
		name := map[bool]string{false: "precopy", true: "postcopy"}[postcopy]
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t)
			src, dst, dstURI, tls := migratePair(t, 64, postcopy)
			wantStatus(t, dst, StatusMigrating)
			wire, uri := sniff(t, dstURI)
			var hookSrc, hookDst Status
			var progress int
			seen := map[string]bool{}
			info, err := src.Migrate(ctx, uri, MigrateOptions{
				Postcopy: postcopy,
				TLS:      tls,
				// Slow enough that the first pass is still running when
				// post-copy is requested (the tiny guest is ~1 MB).
				MaxBandwidth: map[bool]uint64{true: 256 << 10}[postcopy],
				Switchover: func(ctx context.Context) error {
					// The source's vCPUs have stopped; the destination
					// has not started.
					var err error
					if hookSrc, err = src.Status(ctx); err != nil {
						return err
					}
					hookDst, err = dst.Status(ctx)
					return err
				},
				Progress: func(mi MigrationInfo) { progress++; seen[mi.Status] = true },
			})
			if err != nil {
				t.Fatal(err)
			}
			if hookSrc != StatusMigrating || hookDst != StatusMigrating {
				t.Errorf("at switchover: source %s, destination %s; want both migrating", hookSrc, hookDst)
			}
			if info.Status != "completed" || info.RAMTotal == 0 || progress == 0 {
				t.Errorf("final info %+v after %d progress calls", info, progress)
			}
			if info.Postcopy != postcopy {
				t.Errorf("post-copy happened: %v, want %v (statuses polled: %v)", info.Postcopy, postcopy, seen)
			}
			if st, err := dst.WaitIncoming(ctx); err != nil || st != StatusRunning {
				t.Fatalf("destination after migration: %s, %v; want running", st, err)
			}
			wantStatus(t, src, StatusStopped)
			for side, vm := range map[string]*VM{"source": src, "destination": dst} {
				if creds, err := vm.MigrationTLSCreds(ctx); err != nil || creds != migrationTLSID {
					t.Errorf("%s: tls-creds %q, %v; want %q", side, creds, err, migrationTLSID)
				}
			}
			// QEMU's migration stream starts with "QEVM"; in TLS it
			// starts with a handshake record (0x16).
			if head := wire.first(); len(head) == 0 || head[0] != 0x16 || head == "QEVM" {
				t.Errorf("the stream on the wire starts with %q, want a TLS handshake", head)
			}
			if err := src.Stop(ctx, 0); err != nil {
				t.Fatal(err)
			}
			wantStatus(t, src, StatusStopped)
			wantStatus(t, dst, StatusRunning)
			t.Logf("%s: total %v, downtime %v, %d bytes in %d passes", name, info.Total, info.Downtime, info.Transferred, info.Passes)
		})
	}
}

// If the switchover hook fails (the claim was lost), the migration is
// cancelled and the source runs on.
func TestMigrateHookFailureKeepsSource(t *testing.T) {
	ctx := testCtx(t)
	src, _, uri, tls := migratePair(t, 64, false)
	errClaim := errors.New("claim lost")
	_, err := src.Migrate(ctx, uri, MigrateOptions{TLS: tls, Switchover: func(context.Context) error { return errClaim }})
	if !errors.Is(err, errClaim) {
		t.Fatalf("Migrate = %v, want the hook's error", err)
	}
	wantStatus(t, src, StatusRunning)
}

// A destination that is not listening fails the migration cleanly.
func TestMigrateToNowhere(t *testing.T) {
	host := testHost(t)
	ctx := testCtx(t)
	src := startVM(t, host, filepath.Join(t.TempDir(), "src"), tinySpec("nowhere", 64), false)
	_, err := src.Migrate(ctx, "tcp:127.0.0.1:1", MigrateOptions{})
	if err == nil {
		t.Fatal("Migrate to a closed port succeeded")
	}
	wantStatus(t, src, StatusRunning)
}

// A destination lost after the switchover hook (the claim has moved)
// fails the migration with ErrAfterSwitchover and leaves the source
// paused rather than running on a stale claim.
func TestMigrateFailsAfterSwitchover(t *testing.T) {
	ctx := testCtx(t)
	src, dst, uri, tls := migratePair(t, 64, false)
	_, err := src.Migrate(ctx, uri, MigrateOptions{TLS: tls, Switchover: func(ctx context.Context) error {
		return dst.Kill(ctx)
	}})
	if !errors.Is(err, ErrMigration) || !errors.Is(err, ErrAfterSwitchover) {
		t.Fatalf("Migrate = %v, want ErrMigration and ErrAfterSwitchover", err)
	}
	wantStatus(t, src, StatusPaused)
}
