//go:build race

package claimsim

// The race detector slows the single-threaded simulation ~15×; it adds
// nothing there (Run shares no memory between seeds), so race builds run
// the -short count of seeds unless -seeds says otherwise.
func init() { raceBuild = true }
