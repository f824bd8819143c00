// Package testguest builds the tiny test guest of the hypervisor's
// tests and of qa: the Debian kernel (fetched with apt-get download into
// a cache, never installed on the host) and an initramfs made here with
// busybox-static, the kernel modules named (dependencies read from each
// module's .modinfo) and shoal-agent. Build makes the agent guest;
// Initramfs, FetchKernel, FetchBusybox and ModuleOrder are the pieces,
// which qa also uses for its scenario guests.
//
// The agent guest's /init (a busybox shell as PID 1) mounts proc, sys,
// dev, run and tmp, loads AgentModules, starts shoal-agent (restarting
// it if it exits), mounts an ext4 /dev/vda at /mnt when present, and
// runs udhcpc on eth0 when present. The agent finds its virtio-serial
// port (AgentPortName) through sysfs: the guest has no udev.
//
// Caveats: the first fetch downloads ~70 MB and needs root (apt-get
// download) or an already filled cache ($SHOAL_QA_CACHE, else
// /var/cache/shoal-qa as root). BuildAgent runs the go tool and so
// works only inside the shoal module. Nothing here starts QEMU: callers
// own their VMs.
package testguest
