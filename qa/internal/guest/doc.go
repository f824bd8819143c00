// Package guest builds and boots tiny QEMU guests for tests that need a
// real kernel (bonding, carrier, failover) the host does not have: the
// Debian kernel (fetched with apt-get download into a cache, never
// installed on the host), an initramfs built with hypervisor/testguest
// (busybox-static, the kernel modules named, with their dependencies read
// from each module's .modinfo, and any files such as the shoal binary),
// and this package's scenario /init, booted with
// qemu-system-x86_64 under TCG. Results come back over a virtio-serial
// port named "shoal.results" (not ttyS0, which loses output when getty
// hangs up), written by the guest's /init through `report`. The QMP
// client of hypervisor/qmp pulls virtual cables (set_link).
//
// Caveats: the first Fetch downloads ~70 MB and needs root (apt-get
// download as root) or an already filled cache. TCG is slow: a guest
// boots in about 4 s on a quiet machine, more when several share 2 cores.
// Every VM is owned by its caller: Stop kills it and waits.
package guest
