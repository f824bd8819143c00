// Package vmcluster runs image-level Shoal clusters: N copies of the built
// appliance image booted under QEMU (OVMF; TCG, or KVM where a probe shows
// it works), each with its own qcow2 overlay of a private copy of the
// image, data disks left blank for scribe, two NICs on a userspace L2
// switch (qa/internal/l2switch), serial consoles logged to files, a QMP
// socket and a QEMU guest agent socket per node. `shoal-qa vm` and
// qa.NewVMCluster are thin layers over it.
//
// Processes and ownership: Up starts one switch daemon (`shoal-qa vm
// switchd`, ServeSwitch) and one daemonized QEMU per node, then returns;
// they outlive the process that started them. The switch daemon owns the
// switch, the DHCP server (dnsmasq in a network namespace of ours, on a
// tap device that the daemon bridges to a switch port), the forward of
// node1's HTTPS API to a localhost port, and a control socket through
// which other processes set faults (partition, drop, delay). Everything
// carries the cluster's tag (derived from the directory) in its
// environment and names, so Down finds and removes it all from the
// directory alone, also after a crash or with the state file gone.
//
// Commands inside a node run through the QEMU guest agent (qemu-ga, in the
// image, started by udev only when the hypervisor offers its virtio port):
// no network, no credentials, no serial console parsing. See docs/image.md.
//
// Caveats: the state file is not locked; do not run two mutating verbs on
// one cluster at the same instant. Every node costs about 1 GiB of memory
// and one busy host core while it boots under TCG.
package vmcluster
