package peer_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/peer"
	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/peertest"
)

// remoteFrom is a client of the node API at addr with the credentials in
// nd's data dir, as `shoal status --addr` on nd makes it.
func remoteFrom(t *testing.T, nd *peertest.Node, addr string) *client.Client {
	t.Helper()
	nt, err := peer.LoadNodeTLS(nd.Config.DataDir)
	if err != nil {
		t.Fatalf("load node credentials: %v", err)
	}
	return client.NewRemote(addr, nt.ClientTLS())
}

func memberIDs(ms []client.Member) []string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

func TestRemoteStatus(t *testing.T) {
	a := peertest.NewCluster(t, 3)
	ctx := context.Background()
	from, to := a.Nodes[0], a.Nodes[2]
	rc := remoteFrom(t, from, to.Peer.APIAddr())

	st, err := rc.Status(ctx)
	if err != nil {
		t.Fatalf("remote status: %v", err)
	}
	local := to.Status()
	if st.ClusterID != local.ClusterID || st.Self.ID != to.ID() || st.Phase != client.PhaseMember {
		t.Errorf("remote status: cluster %q self %s phase %q; want %q, %s, member", st.ClusterID, st.Self.ID, st.Phase, local.ClusterID, to.ID())
	}
	if diff := cmp.Diff(memberIDs(local.Members), memberIDs(st.Members)); diff != "" {
		t.Errorf("remote status members differ from the node's local view (-local +remote):\n%s", diff)
	}
	a.WaitFor("remote status shows 3 alive members", func() bool {
		st, err := rc.Status(ctx)
		return err == nil && peertest.Count(st, client.StateAlive) == 3
	})
	nodes, err := rc.Nodes(ctx)
	if err != nil {
		t.Fatalf("remote nodes: %v", err)
	}
	if diff := cmp.Diff(memberIDs(local.Members), memberIDs(nodes)); diff != "" {
		t.Errorf("remote node list (-want +got):\n%s", diff)
	}
	if _, err := rc.Events(ctx); err != nil {
		t.Errorf("remote events: %v", err)
	}
	// The remote client serves only the read-only views.
	if err := rc.LeaveCluster(ctx); err == nil {
		t.Error("leave through a member's node API succeeded; it must not be served there")
	}
	if to.Status().Phase != client.PhaseMember {
		t.Error("the node asked remotely to leave is no longer a member")
	}
}

func TestRemoteStatusRefusals(t *testing.T) {
	a := peertest.NewCluster(t, 2)
	b := peertest.NewCluster(t, 1)
	ctx := context.Background()

	// Nothing listens: refused, with a hint.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, err = remoteFrom(t, a.Nodes[0], closed).Status(ctx)
	if !errors.Is(err, client.ErrRefused) || !strings.Contains(err.Error(), "shoal peer") {
		t.Errorf("status of a closed port: %v, want ErrRefused naming shoal peer", err)
	}

	// A node of another cluster: neither side accepts the other.
	_, err = remoteFrom(t, b.Nodes[0], a.Nodes[1].Peer.APIAddr()).Status(ctx)
	if err == nil || !strings.Contains(err.Error(), "not signed by this cluster's CA") {
		t.Errorf("status across clusters: %v, want a refusal (certificate of another CA)", err)
	}

	// A node with no cluster certificate cannot ask at all.
	if _, err := peer.LoadNodeTLS(t.TempDir()); !errors.Is(err, peer.ErrNotMember) {
		t.Errorf("credentials of a non-member: %v, want ErrNotMember", err)
	}
}

func TestRemoteAddr(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.0.5", "10.0.0.5:7443"},
		{"10.0.0.5:8443", "10.0.0.5:8443"},
		{"fd53:686f:616c::1", "[fd53:686f:616c::1]:7443"},
		{"[fd53:686f:616c::1]", "[fd53:686f:616c::1]:7443"},
		{"[fd53:686f:616c::1]:7443", "[fd53:686f:616c::1]:7443"},
		{"node1.example", "node1.example:7443"},
	}
	for _, tt := range tests {
		if got := client.RemoteAddr(tt.in); got != tt.want {
			t.Errorf("RemoteAddr(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
