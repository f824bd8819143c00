// Package agentlink is the host side of a VM's guest agent link: it
// dials the VM's agent socket (QEMU's chardev behind the virtio-serial
// port agent.PortName), keeps redialling whatever breaks (the agent,
// QEMU, a migration, this daemon restarting), and resyncs after every
// connect by asking for hello and the addresses, since over virtio-serial
// the agent cannot tell that a new host connected.
//
// Status is what the agent last said (boot ID, uptime, addresses, the
// host time of the last heartbeat); Changed signals every change.
// Shutdown, Freeze and Thaw are requests: each waits for a connection
// until its context ends, and fails with ErrDisconnected if the
// connection breaks before the reply (the request may have run).
//
// Concurrency: all methods are safe for concurrent use. Run owns the
// connection; a session writes its resync requests from one goroutine
// it waits for; writes on a connection are serialised.
package agentlink
