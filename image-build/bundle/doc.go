// Package bundle reads and writes update bundles: a tar file holding a
// manifest (format, version, and the size and sha256 of every file), the
// manifest's ed25519 signature, then the files: the root squashfs and one
// UKI per slot. The image carries the public key
// (/usr/share/shoal/update.pub) and the upgrade code of a node uses Extract
// to refuse any bundle that is not signed by the matching private key or
// whose files do not match the manifest.
//
// Invariants: Extract trusts nothing before the signature checks out; it
// never writes outside its directory (file names are plain names from a
// fixed set), never writes more than the manifest's sizes, and leaves no
// file behind when it returns an error. Keys are text files: one line
// "shoal-update-public-v1 <base64>" or "shoal-update-private-v1 <base64 of
// the 32-byte seed>".
package bundle
