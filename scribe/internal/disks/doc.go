// Package disks finds a node's data disks and opens each as a chunk store,
// formatting the ones that are blank.
//
// Discovery: the paths matching Config.Globs (the qa harness's files
// /var/lib/shoal/disks/disk*, or any files in tests); with no globs, the
// whole block devices of the machine (/sys/block) except virtual ones
// (loop, ram, zram, dm, md, sr) and any disk that holds a mounted file
// system or active swap, itself or in a partition (the boot disk).
//
// Formatting rules (Open):
//   - a disk with a valid superblock of this node and cluster is opened;
//   - a blank disk (first 64 KiB all zero) is formatted with this node's
//     and cluster's IDs in the superblock;
//   - a disk with foreign data, or a store of another node or cluster, is
//     left alone and reported, unless its path is listed in
//     Config.ForceFormat: then it is formatted (its data is lost). A disk
//     that already holds this node's store is never formatted again, forced
//     or not.
//
// Disks are opened with O_DIRECT when the file system allows it, buffered
// otherwise. Open never stops at one bad disk: it returns the disks it
// could open and one Problem per disk it could not.
//
// Concurrency: Open and Discover are plain functions; the returned Disks
// are owned by the caller, who closes them.
package disks
