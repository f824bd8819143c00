//go:build race

package replicate

// The race detector slows the simulated clusters several times; race
// builds run fewer seeds of the long randomised tests.
func init() { raceBuild = true }
