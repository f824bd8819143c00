package proccluster

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// tools the harness runs, with the Debian package that has each.
var tools = []struct{ bin, pkg string }{
	{"ip", "iproute2"},
	{"nsenter", "util-linux"},
	{"unshare", "util-linux"},
	{"mount", "mount"},
	{"nft", "nftables"},
	{"dnsmasq", "dnsmasq-base"},
	{"fusermount3", "fuse3"},
}

// Packages is the Debian package list the harness needs (ping for its tests).
var Packages = []string{"iproute2", "util-linux", "mount", "nftables", "dnsmasq-base", "fuse3", "iputils-ping"}

// CheckPrereqs reports a missing privilege or tool, naming what to install.
func CheckPrereqs() error {
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	var missing []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t.bin, t.pkg))
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, "/dev/fuse (kernel module fuse)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s; install with apt-get install %s", ErrMissingTool, strings.Join(missing, ", "), strings.Join(Packages, " "))
	}
	return nil
}
