// Package fiobench is scribe's fio benchmark suite: it runs the same fio
// rows (nbd engine) against scribe and against `qemu-nbd --cache=none`
// serving a raw file in the same directory, and reports both with their
// ratio and the server CPU per I/O. Run serves a replicated VSD (two
// in-process nodes, one reached in-process and one over the chunk
// service's mutual TLS on loopback) for `shoal-qa bench scribe`; the
// pieces (Rows, Fio, StartQemuNBD, ServeNBD, SelfCPU) let other
// benchmarks compare other targets.
//
// Caveats: figures from a shared machine are noisy; the suite prints
// them and asserts nothing. CPU per I/O of scribe is this process's CPU
// time (both nodes run in it; fio runs in its own process), qemu-nbd's
// comes from /proc (100 Hz ticks, coarse). Requires fio built with the
// nbd engine, qemu-img and qemu-nbd; Run fails with ErrMissingTool
// otherwise.
package fiobench
