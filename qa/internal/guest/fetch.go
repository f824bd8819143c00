package guest

import (
	"context"

	"github.com/shoal-hci/shoal/hypervisor/testguest"
)

// ErrNoPackage is returned when a Debian package can be neither found in
// the cache nor downloaded.
var ErrNoPackage = testguest.ErrNoPackage

// Kernel is an unpacked Debian kernel.
type Kernel = testguest.Kernel

// DefaultCacheDir is where packages are kept (see testguest.DefaultCacheDir).
func DefaultCacheDir() string { return testguest.DefaultCacheDir() }

// FetchKernel returns the current Debian kernel, unpacked in cacheDir.
func FetchKernel(ctx context.Context, cacheDir string) (Kernel, error) {
	return testguest.FetchKernel(ctx, cacheDir)
}

// FetchBusybox returns the path of busybox from busybox-static.
func FetchBusybox(ctx context.Context, cacheDir string) (string, error) {
	return testguest.FetchBusybox(ctx, cacheDir)
}
