// Package proccluster runs a process-level Shoal cluster on one machine: real
// shoal daemons, one network namespace and one mount namespace per node,
// a switch namespace with a bridge and a DHCP server (dnsmasq), data disks
// served by a fault-injecting FUSE file system (package faultdisk), and
// the faults scenarios need (kill, restart, freeze/thaw, cable cut/heal,
// partition/heal, disk fail/full/heal, add a node).
//
// Layout of a cluster directory D (default /tmp/shoal-qa):
//
//	D/state.json                  what Up built (nodes, daemons, binaries)
//	D/bin/shoal                   the shoal binary built by Up
//	D/bin/shoal-qa                a copy of shoal-qa, which serves the disks
//	D/shq-TAG-ns/NODE             persisted mount namespaces (a private bind mount)
//	D/switch/dnsmasq.{log,leases,pid}
//	D/nodes/NODE/run|lib|etc      the node's /run/shoal, /var/lib/shoal, /etc/shoal
//	D/nodes/NODE/lib/disks/diskK  FUSE view of D/nodes/NODE/disks/diskK.img
//	D/nodes/NODE/logs/DAEMON.log  one log per daemon, plus fusedisk.log
//	D/nodes/NODE/pids/DAEMON.json pid and start time of each running daemon
//
// Names: TAG is derived from D's absolute path (TagFor), every network
// namespace is "shq-TAG-sw" or "shq-TAG-NODE", and every process the
// harness starts carries SHOAL_QA_CLUSTER=TAG in its environment. So Down
// finds everything a run left (processes, mounts under D, namespaces) from D
// alone, even when state.json is gone or corrupt; DownAll does the same for
// every tag.
//
// State lives in D, not in memory: a Cluster returned by Open in a second
// process (the shoal-qa CLI) can kill, restart or partition what another
// process brought up. Processes are started in their own session and
// outlive the process that started them.
//
// Concurrency: a Cluster's methods may be called from one goroutine at a
// time; state.json is rewritten on every change and not locked against
// another process changing the same cluster at the same moment. The
// goroutines that reap started processes belong to the Cluster; Close waits
// for them after the processes are gone (the CLI, which exits right away,
// does not call it).
//
// Caveats: Up creates the empty directories /run/shoal, /var/lib/shoal and
// /etc/shoal on the host as mount points (inside a node they are bind
// mounts of the node's own directories; on the host they stay empty). After
// READY=1 the harness stops listening on a daemon's NOTIFY_SOCKET, so later
// notifications (STATUS=, WATCHDOG=1) fail with ECONNREFUSED; daemons must
// ignore that, as they must when not run by systemd.
package proccluster
