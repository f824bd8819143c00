// Package sysmon makes the Go runtime's monitor thread (sysmon) tick less
// often while the process is busy, by lengthening that one thread's timer
// slack (Linux /proc/TID/timerslack_ns).
//
// Why: sysmon sleeps in 20 µs steps (nanosleep, which the default timer
// slack of 50 µs stretches to ~70 µs) whenever any P is running or in a
// system call, and goes to a deep sleep only when it sees every P idle;
// every system call entered while it sleeps deeply wakes it again. A
// storage daemon spends most of a 4 KiB write or a FLUSH blocked in
// io_uring_enter or fdatasync, holding its P, so sysmon ticks through all
// of it: in scribe's write+flush benchmark it was 23-30 % of each
// process's CPU (docs/scribe.md, "write+flush"). With a slack of 500 µs
// each tick sleeps up to ~0.5 ms and sysmon's share falls to under a
// third of that. Its duties (taking a P back from a thread blocked in a
// system call, preempting a goroutine that ran for 10 ms, polling the
// network when nobody has for 10 ms) are then up to one slack later; none
// of scribe's I/O waits on them.
//
// Which thread is sysmon: runtime.main starts it before anything else,
// so it is the process's oldest thread after the main one (the earliest
// start time, then the lowest thread ID). Relax changes only that thread;
// the others keep their slack (a longer slack there would delay the
// scheduler's own short sleeps).
//
// Caveats: Linux only (elsewhere Relax returns ErrUnsupported). Changing
// another thread's slack needs CAP_SYS_NICE: without it Relax returns the
// permission error and changes nothing. A thread ID reused after the
// kernel's PID counter wrapped within the same clock tick of the
// process's start could be picked wrongly; the effect of a wrong pick is
// a slower sleep in some other runtime thread, never a wrong result.
package sysmon
