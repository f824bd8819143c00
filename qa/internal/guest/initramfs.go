package guest

import "github.com/shoal-hci/shoal/hypervisor/testguest"

// Initramfs describes a scenario guest's root file system: a
// testguest.Initramfs whose /init loads the modules, finds the results
// port, runs Script and powers off.
type Initramfs struct {
	Kernel  Kernel
	Busybox string   // host path of a static busybox
	Modules []string // modules to load at boot, in this order (dependencies are added)
	// Files maps guest paths to host paths (copied, mode kept).
	Files map[string]string
	// Script is run by /init as `sh /scenario.sh` after the modules are
	// loaded and the results port is found; /init powers off after it.
	Script string
}

// initScript is the guest's /init. It exports R (the results port) and a
// `report` helper as /bin/report.
const initScript = testguest.InitPreamble + `mkdir -p /var/lib/shoal /etc/shoal
R=/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do
  for d in /sys/class/virtio-ports/*; do
    [ -f "$d/name" ] && [ "$(cat $d/name)" = shoal.results ] && R=/dev/$(basename $d)
  done
  [ "$R" != /dev/null ] && break
  sleep 0.2
done
export R
report "BOOTED $(uname -r)"
sh /scenario.sh 2>&1 | tee /tmp/scenario.log
report "DONE"
sync
poweroff -f
`

const reportScript = `#!/bin/sh
echo "$*" >> "$R"
`

// Build writes the initramfs (an uncompressed newc cpio) to out.
func (s Initramfs) Build(out string) error {
	return testguest.Initramfs{
		Kernel:  s.Kernel,
		Busybox: s.Busybox,
		Modules: s.Modules,
		Files:   s.Files,
		Scripts: map[string]string{"/bin/report": reportScript, "/scenario.sh": s.Script},
		Init:    initScript,
	}.Build(out)
}
