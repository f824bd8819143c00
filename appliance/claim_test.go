package appliance

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/peer/client"
)

// fakePeer serves a canned claim API on a UNIX socket and records the
// claim requests it got.
func fakePeer(t *testing.T, got *[]client.ClaimRequest) string {
	t.Helper()
	mux := http.NewServeMux()
	view := client.ClaimView{Resource: "vm/a", Epoch: 3, Holder: "n1", State: client.ClaimHeld, Confirmed: true}
	mux.HandleFunc("GET /v1/claims", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode([]client.ClaimView{view}) })
	mux.HandleFunc("GET /v1/claim", func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(view) })
	mux.HandleFunc("POST /v1/claim", func(w http.ResponseWriter, r *http.Request) {
		var req client.ClaimRequest
		json.NewDecoder(r.Body).Decode(&req)
		*got = append(*got, req)
		if req.Epoch == 3 {
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(client.ClaimError{Code: client.ClaimErrTaken, Msg: "taken: n1 holds it", Claim: &client.Claim{Resource: req.Resource, Epoch: 3, Holder: "n1"}})
			return
		}
		json.NewEncoder(w).Encode(client.Claim{Resource: req.Resource, Epoch: 4, Holder: "n2"})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(client.Status{ClusterID: "c", Phase: client.PhaseMember, Self: client.Member{ID: "n1"},
			Fence: &client.FenceStatus{Fenced: true, Heard: 1, Need: 2, Voters: []string{"n1", "n2", "n3"}}})
	})
	return serveUnix(t, mux)
}

// serveUnix serves h on a fake peer socket for the test's lifetime and
// returns its path (in a short temp dir: socket paths are limited).
func serveUnix(t *testing.T, h http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shoalcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "peer.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestClaimVerbs(t *testing.T) {
	var reqs []client.ClaimRequest
	sock := fakePeer(t, &reqs)
	verbs := []verb.Verb{
		{Name: "claim get", Summary: "s", Run: ClaimGet},
		{Name: "claim ls", Summary: "s", Run: ClaimLs},
		{Name: "claim take", Summary: "s", Run: ClaimTake},
		{Name: "status", Summary: "s", Run: Status},
	}
	tests := []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"claim", "ls"}, 0, "vm/a      3      n1"},
		{[]string{"claim", "ls", "--json"}, 0, `"state": "held"`},
		{[]string{"claim", "get", "vm/a"}, 0, "held"},
		{[]string{"claim", "get", "vm/a", "--json"}, 0, `"epoch": 3`},
		{[]string{"claim", "get"}, verb.ExitUsage, "takes 1 argument"},
		{[]string{"claim", "take", "vm/a"}, 0, "vm/a: epoch 4 held by n2"},
		{[]string{"claim", "take", "vm/a", "--epoch", "3"}, verb.ExitError, "n1 holds it"},
		{[]string{"claim", "take", "vm/a", "--epoch", "0"}, verb.ExitUsage, "whole number"},
		{[]string{"claim", "take", "vm/a", "--epoch", "x"}, verb.ExitUsage, "whole number"},
		{[]string{"status"}, 0, "fence:    FENCED: no majority of voters heard recently; claims refused, VMs paused (heard 1 of 3 voters, need 2"},
		{[]string{"status", "--json"}, 0, `"fenced": true`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := verb.Dispatch(context.Background(), verbs, append(tt.args, "--socket", sock), nil, &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", code, tt.code, out.String(), errb.String())
			}
			if all := out.String() + errb.String(); !strings.Contains(all, tt.contains) {
				t.Errorf("output lacks %q:\n%s", tt.contains, all)
			}
		})
	}
	want := []client.ClaimRequest{{Resource: "vm/a"}, {Resource: "vm/a", Epoch: 3}}
	if len(reqs) != len(want) || reqs[0] != want[0] || reqs[1] != want[1] {
		t.Errorf("claim requests = %+v, want %+v (bad --epoch must send nothing)", reqs, want)
	}
}
