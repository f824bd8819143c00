package netns

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// partitionTable is the nftables table holding a node's partition rules.
const partitionTable = "shq_partition"

// Isolate makes node drop every packet from and to the given peers: input
// is dropped by the peers' MAC addresses and IP addresses, output by their
// IP addresses. It replaces rules an earlier call left. Call it on both
// sides for a symmetric partition.
func Isolate(ctx context.Context, tag, node string, peers []Iface) error {
	var macs, v4, v6 []string
	for _, p := range peers {
		if p.MAC != "" {
			macs = append(macs, p.MAC)
		}
		for _, a := range p.Addrs {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				return fmt.Errorf("peer address %q: %w", a, err)
			}
			if addr.Is4() {
				v4 = append(v4, addr.String())
			} else {
				v6 = append(v6, addr.String())
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", partitionTable, partitionTable)
	fmt.Fprintf(&b, "table inet %s {\n", partitionTable)
	fmt.Fprintf(&b, "  chain in {\n    type filter hook input priority -10; policy accept;\n")
	rule := func(match string, set []string) {
		if len(set) > 0 {
			fmt.Fprintf(&b, "    %s { %s } drop\n", match, strings.Join(set, ", "))
		}
	}
	rule("ether saddr", macs)
	rule("ip saddr", v4)
	rule("ip6 saddr", v6)
	fmt.Fprintf(&b, "  }\n  chain out {\n    type filter hook output priority -10; policy accept;\n")
	rule("ip daddr", v4)
	rule("ip6 daddr", v6)
	fmt.Fprintf(&b, "  }\n}\n")
	return nft(ctx, NodeName(tag, node), b.String())
}

// Unisolate removes node's partition rules, if any.
func Unisolate(ctx context.Context, tag, node string) error {
	return nft(ctx, NodeName(tag, node), fmt.Sprintf("table inet %s\ndelete table inet %s\n", partitionTable, partitionTable))
}

// Isolated reports whether node has partition rules.
func Isolated(ctx context.Context, tag, node string) (bool, error) {
	out, err := Run(ctx, "ip", "netns", "exec", NodeName(tag, node), "nft", "list", "tables")
	if err != nil {
		return false, err
	}
	return strings.Contains(out, partitionTable), nil
}

func nft(ctx context.Context, ns, script string) error {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s\nscript:\n%s", ns, err, strings.TrimSpace(string(out)), script)
	}
	return nil
}
