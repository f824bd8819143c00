// Package hlc is a hybrid logical clock: physical milliseconds plus a
// logical counter, so that timestamps issued by one clock strictly increase
// and every timestamp a clock has observed from a peer is below the next one
// it issues.
//
// Invariants:
//   - Clock.Now returns strictly increasing timestamps.
//   - After Clock.Update(t) succeeds, Clock.Now returns a value above t.
//   - A remote timestamp more than MaxOffset ahead of the local physical
//     clock is refused with ErrClockOffset and changes nothing. A node whose
//     clock runs far ahead therefore cannot stamp a value that wins every
//     later write forever: its peers refuse its writes (and the caller flags
//     it), and what is accepted leads real time by at most MaxOffset.
//
// Concurrency: a Clock is safe for concurrent use. Timestamp is a value.
//
// Encoding: 12 bytes, big-endian wall milliseconds (8) then logical (4),
// so that byte order equals timestamp order.
package hlc
