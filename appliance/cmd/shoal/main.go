// Command shoal is the one host binary of the Shoal appliance: every daemon
// and every CLI verb. This file only maps verbs to functions.
package main

import (
	"os"

	"github.com/shoal-hci/shoal/appliance"
	"github.com/shoal-hci/shoal/appliance/internal/verb"
)

var verbs = []verb.Verb{
	{Name: "version", Summary: "print the version, commit and Go version (--json)", Run: appliance.Version},
	{Name: "netd", Summary: "network daemon: NICs, bond, DHCP, backplane address", Daemon: true, Run: appliance.Netd},
	{Name: "net status", Summary: "the network as netd sees it: links, bond, lease, backplane address (--json)", Run: appliance.NetStatus},
	{Name: "net dhcp-server", Summary: "serve DHCP on one interface (test benches and the qa harness only)", Run: appliance.NetDHCPServer},
	{Name: "peer", Summary: "membership daemon: identity, discovery, formation, admission, gossip, local API", Daemon: true, Run: appliance.Peer},
	{Name: "scribe", Summary: "storage daemon: data disks, chunk service on the backplane, NBD for VSDs on a local socket", Daemon: true, Run: appliance.Scribe},
	{Name: "vsd create", Summary: "create a virtual storage device: vsd create NAME --size 4G [--replicas 2|3]", Run: appliance.VSDCreate},
	{Name: "vsd ls", Summary: "list VSDs with size, replicas, allocation and owner (--json)", Run: appliance.VSDLs},
	{Name: "vsd info", Summary: "one VSD: size, replicas, allocated bytes, degraded extents, owner and epoch (--json)", Run: appliance.VSDInfoVerb},
	{Name: "vsd resize", Summary: "grow a VSD: vsd resize NAME --size 8G (never shrinks)", Run: appliance.VSDResize},
	{Name: "vsd rm", Summary: "remove a VSD that nothing uses: vsd rm NAME", Run: appliance.VSDRm},
	{Name: "hypervisor", Summary: "VM daemon: runs this node's VMs under QEMU, places VMs, fails over those of failed nodes", Daemon: true, Run: appliance.Hypervisor},
	{Name: "vm create", Summary: "create a VM: vm create NAME --cpus N --memory 1G [--disk 8G|vsd:NAME|image:NAME] [--iso IMAGE] [--net default|none] [--kernel PATH --initrd PATH --append S]", Run: appliance.VMCreate},
	{Name: "vm ls", Summary: "list VMs with status, node and size (--json)", Run: appliance.VMLs},
	{Name: "vm info", Summary: "one VM: status, node, epoch, disks, NICs, guest agent (--json)", Run: appliance.VMInfo},
	{Name: "vm start", Summary: "start a stopped VM on a node chosen by placement", Run: appliance.VMStart},
	{Name: "vm stop", Summary: "stop a VM: ACPI power off, or at once with --force (--wait D)", Run: appliance.VMStop},
	{Name: "vm restart", Summary: "stop a VM, wait until it has stopped, start it again (--force)", Run: appliance.VMRestart},
	{Name: "vm migrate", Summary: "live-migrate a running VM to another node: vm migrate NAME [--to NODE] [--postcopy] [--wait D]", Run: appliance.VMMigrate},
	{Name: "vm rm", Summary: "remove a stopped VM (--force: even a running one) and the disks made with it (--keep-disks keeps them)", Run: appliance.VMRm},
	{Name: "vm console", Summary: "attach to a VM's serial console from any node (Ctrl-] detaches; --until TEXT --timeout D for scripts)", Run: appliance.VMConsole},
	{Name: "image upload", Summary: "store an ISO or disk image (raw, qcow2) in scribe: image upload FILE [--name NAME]", Run: appliance.ImageUpload},
	{Name: "image ls", Summary: "list images with format, size, state and the VMs using them (--json)", Run: appliance.ImageLs},
	{Name: "image rm", Summary: "remove an image no VM uses: image rm NAME", Run: appliance.ImageRm},
	{Name: "install-units", Summary: "write the systemd units of the shoal daemons into a root tree and enable them (--root DIR)", Run: appliance.InstallUnits},
	{Name: "health", Summary: "the node's health gate: check once, or until every check passes (--wait)", Run: appliance.Health},
	{Name: "status", Summary: "cluster ID, this node and the members with their states (--json)", Run: appliance.Status},
	{Name: "cluster create", Summary: "make this unclaimed node the first member of a new cluster (--policy)", Run: appliance.ClusterCreate},
	{Name: "cluster join", Summary: "join the cluster of the node at ADDR (its node API, port 7443)", Run: appliance.ClusterJoin},
	{Name: "cluster leave", Summary: "leave the cluster gracefully; the node stays unclaimed", Run: appliance.ClusterLeave},
	{Name: "cluster rotate-key", Summary: "replace the gossip encryption key on every member", Run: appliance.ClusterRotateKey},
	{Name: "cluster policy", Summary: "set the admission policy: auto, approve or code", Run: appliance.ClusterPolicy},
	{Name: "node ls", Summary: "list members and pending nodes (--json)", Run: appliance.NodeLs},
	{Name: "node approve", Summary: "admit a pending node: node approve ID [--code N]", Run: appliance.NodeApprove},
	{Name: "node remove", Summary: "forget a dead node for good; its certificate stops working", Run: appliance.NodeRemove},
	{Name: "node events", Summary: "recent membership events: join, fail, leave, recover... (--json)", Run: appliance.NodeEvents},
	{Name: "state get", Summary: "debug: print one record of the cluster state: state get KEY (--json)", Run: appliance.StateGet},
	{Name: "state ls", Summary: "debug: list cluster state records under a key prefix: state ls [PREFIX] (--json)", Run: appliance.StateLs},
	{Name: "state put", Summary: "debug: write fields of a record: state put KEY field=value ...", Run: appliance.StatePut},
	{Name: "state rm", Summary: "debug: delete a record of the cluster state: state rm KEY", Run: appliance.StateRm},
	{Name: "state watch", Summary: "debug: print changes under a prefix as they happen: state watch [PREFIX] [--from REV] (--json)", Run: appliance.StateWatch},
	{Name: "state digest", Summary: "debug: hash of the cluster state as this node sees it; equal on converged nodes (--json)", Run: appliance.StateDigest},
	{Name: "claim get", Summary: "a resource's claim (epoch, holder) as a majority of voters sees it (--json)", Run: appliance.ClaimGet},
	{Name: "claim ls", Summary: "this node's last known view of every claim, no network (--json)", Run: appliance.ClaimLs},
	{Name: "claim take", Summary: "debug: claim RESOURCE for this node at the next epoch (--epoch E)", Run: appliance.ClaimTake},
}

func main() { os.Exit(verb.Main(verbs)) }
