package appliance

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/peer/peertest"
)

func TestStatusAddr(t *testing.T) {
	c := peertest.NewCluster(t, 2)
	from, to := c.Nodes[0], c.Nodes[1]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	verbs := []verb.Verb{
		{Name: "status", Summary: "s", Run: Status},
		{Name: "node ls", Summary: "s", Run: NodeLs},
	}
	dir := from.Config.DataDir
	tests := []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"status", "--addr", to.Peer.APIAddr(), "--data-dir", dir}, 0, "this node: " + to.ID()},
		{[]string{"status", "--json", "--addr", to.Peer.APIAddr(), "--data-dir", dir}, 0, `"cluster_id": "` + to.Status().ClusterID},
		{[]string{"node", "ls", "--addr", to.Peer.APIAddr(), "--data-dir", dir}, 0, from.ID()},
		{[]string{"node", "ls", "--json", "--addr", to.Peer.APIAddr(), "--data-dir", dir}, 0, `"id": "` + to.ID()},
		{[]string{"status", "--addr", to.Peer.APIAddr(), "--data-dir", t.TempDir()}, verb.ExitError, "this node has no cluster certificate"},
		{[]string{"status", "--addr", closed, "--data-dir", dir}, verb.ExitError, "connection refused: is `shoal peer` running on that node"},
		{[]string{"status", "--socket", from.Config.Socket}, 0, "this node: " + from.ID()},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:2], " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := verb.Dispatch(context.Background(), verbs, tt.args, nil, &out, &errb)
			if code != tt.code {
				t.Fatalf("%v: exit %d, want %d; stdout %q stderr %q", tt.args, code, tt.code, out.String(), errb.String())
			}
			if all := out.String() + errb.String(); !strings.Contains(all, tt.contains) {
				t.Errorf("%v: output lacks %q:\n%s", tt.args, tt.contains, all)
			}
		})
	}
}
