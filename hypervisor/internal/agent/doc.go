// Package agent is the guest side of the link between a VM and its host
// (shoal-agent) and the wire protocol both sides speak.
//
// Protocol: newline-delimited JSON, one Message a line, at most MaxLine
// bytes, every message tagged with the protocol Version. A bad or
// oversized line is skipped by the Decoder (ErrMalformed, ErrTooLong),
// never fatal: a host that reconnects to a virtio-serial chardev can
// read the tail of a line. Receivers ignore unknown fields and types.
// The agent speaks first on every connection (hello, ips, a heartbeat),
// then sends a heartbeat every HeartbeatInterval, ips when the addresses
// change, and a reply to every host request (by ID).
//
// Transports: Vsock (CID 2, VsockPort) then Serial (the virtio-serial
// port PortName), tried in order on every connect. Over virtio-serial
// the port reads EOF while no host is connected; the agent then reopens
// it every RetryInterval. Writes on a port without a host block until
// one connects; a session's reader closes the stream when it ends, which
// unblocks them.
//
// Invariants: file systems frozen by fs-freeze are thawed by fs-thaw,
// by the freeze timeout (capped by MaxFreeze), or when Run returns,
// whichever comes first. Shutdown's reply is written before the power-off
// starts.
//
// Concurrency: Run owns one session at a time; a session has one reader
// goroutine, waited for before the session returns. Requests are served
// one at a time in the session goroutine, heartbeats between them. The
// freeze timeout is a time.AfterFunc that takes the agent's mutex; it
// can fire while Run returns, and then finds nothing to thaw.
package agent
