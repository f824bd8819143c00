package guest

import "github.com/shoal-hci/shoal/hypervisor/testguest"

// ModuleOrder returns the .ko files (relative to modDir) that load the
// named modules, dependencies first (see testguest.ModuleOrder).
func ModuleOrder(modDir string, names []string) ([]string, error) {
	return testguest.ModuleOrder(modDir, names)
}
