package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkCreateToRunning measures Start (process, QMP handshake) until
// query-status says running, for a VM without disks under TCG.
func BenchmarkCreateToRunning(b *testing.B) {
	host := testHost(b)
	ctx := testCtx(b)
	tmp := b.TempDir()
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		vm, err := Start(ctx, host, filepath.Join(tmp, fmt.Sprint(i)), tinySpec("bench", 256), StartOptions{})
		if err != nil {
			b.Fatal(err)
		}
		st, err := vm.Status(ctx)
		if err != nil || st != StatusRunning {
			b.Fatalf("status %s, %v", st, err)
		}
		total += time.Since(t0)
		b.StopTimer()
		vm.Kill(ctx)
		vm.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/start")
}

// BenchmarkMigrate prints migration total time and QEMU's downtime
// figure for idle guests under TCG on loopback with QEMU's default
// bandwidth limit (128 MiB/s). "zero" guests have untouched RAM (QEMU
// sends zero pages as flags); "random" guests have RAM filled from a
// file of random bytes, so every page crosses the wire. "tls" runs
// over mutual TLS as the daemon does, "plain" in clear, for the ratio.
func BenchmarkMigrate(b *testing.B) {
	for _, mem := range []int{256, 1024} {
		for _, fill := range []string{"zero", "random"} {
			for _, wire := range []string{"tls", "plain"} {
				b.Run(fmt.Sprintf("%dMiB-%s-%s", mem, fill, wire), func(b *testing.B) {
					benchMigrate(b, mem, fill == "random", wire == "tls")
				})
			}
		}
	}
}

func benchMigrate(b *testing.B, memMiB int, random, tls bool) {
	host := testHost(b)
	ctx := testCtx(b)
	tmp := b.TempDir()
	var opts StartOptions
	if random {
		ram := filepath.Join(tmp, "ram")
		f, err := os.Create(ram)
		if err != nil {
			b.Fatal(err)
		}
		rnd, err := os.Open("/dev/urandom")
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 1<<20)
		for range memMiB {
			rnd.Read(buf)
			f.Write(buf)
		}
		rnd.Close()
		f.Close()
		opts.ExtraArgs = []string{"-object", fmt.Sprintf("memory-backend-file,id=ram0,size=%dM,mem-path=%s,share=off", memMiB, ram),
			"-machine", "memory-backend=ram0"}
	}
	var total, down time.Duration
	var bytes uint64
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		spec := tinySpec("mig", memMiB)
		src, err := Start(ctx, host, filepath.Join(tmp, fmt.Sprint("src", i)), spec, opts)
		if err != nil {
			b.Fatal(err)
		}
		dst, err := Start(ctx, host, filepath.Join(tmp, fmt.Sprint("dst", i)), spec, StartOptions{Incoming: true, ExtraArgs: opts.ExtraArgs})
		if err != nil {
			b.Fatal(err)
		}
		var srcTLS, dstTLS *MigrationTLS
		if tls {
			srcTLS, dstTLS = tlsPair(b)
		}
		uri, err := dst.Incoming(ctx, "127.0.0.1:0", false, dstTLS)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		info, err := src.Migrate(ctx, uri, MigrateOptions{TLS: srcTLS})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		total += info.Total
		down += info.Downtime
		bytes += info.Transferred
		for _, vm := range []*VM{src, dst} {
			vm.Kill(ctx)
			vm.Close()
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(total.Milliseconds())/n, "total-ms")
	b.ReportMetric(float64(down.Milliseconds())/n, "downtime-ms")
	b.ReportMetric(float64(bytes)/n/(1<<20), "MiB-sent")
}
