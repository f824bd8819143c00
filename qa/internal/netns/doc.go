// Package netns builds the qa harness's virtual network out of named
// network namespaces with iproute2 and nftables: a switch namespace holding
// a bridge, one namespace per node joined to it by a veth pair (node side
// eth0, switch side p-NODE), link down/up of a node's cable, and partitions
// as nftables rules inside the node namespaces.
//
// Every namespace is named Prefix + tag + "-" + role, so a caller that knows
// the tag (or only the prefix) finds everything after a crash: List and
// Delete are enough to clean up. Links live only inside the namespaces the
// package creates; nothing is added to the caller's namespace, so deleting
// the namespaces deletes every link.
//
// Duplicate address detection is turned off in every namespace it creates
// (accept_dad=0, set before links appear) so static and link-local IPv6
// addresses are usable at once.
//
// All functions shell out to ip(8) and nft(8) and are safe to call from
// several goroutines for different namespaces; they hold no state.
package netns
