package peer

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMetaMerge(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := meta{Policy: "auto", PolicyTime: t0, PolicyBy: "a", Revoked: []string{"x"}}
	b := meta{Policy: "approve", PolicyTime: t0.Add(time.Second), PolicyBy: "b", Revoked: []string{"y"}}
	c := meta{Policy: "code", PolicyTime: t0.Add(time.Second), PolicyBy: "c"}
	orders := [][]meta{{a, b, c}, {c, b, a}, {b, a, c, b}, {c, a, b, a}}
	var first *clusterState
	for i, order := range orders {
		s := &clusterState{}
		for _, m := range order {
			s.merge(m)
		}
		if first == nil {
			first = s
			continue
		}
		if diff := cmp.Diff(first.meta(), s.meta()); diff != "" {
			t.Errorf("order %d converged differently (-first +this):\n%s", i, diff)
		}
	}
	if first.Policy != "code" || len(first.Revoked) != 2 {
		t.Errorf("merged = %+v, want policy code (latest, tie broken by node) and both revocations", first.meta())
	}
}

func FuzzParseClusterState(f *testing.F) {
	f.Add([]byte(`{"cluster_id":"c","ca_cert":"x","node_cert":"y","policy":"auto"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseClusterState(b)
		if err == nil && (c.ClusterID == "" || c.CACert == "" || c.NodeCert == "") {
			t.Fatalf("accepted incomplete state %+v", c)
		}
	})
}

func FuzzParseKeyring(f *testing.F) {
	f.Add([]byte(`["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`["x"]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseKeyring(b)
		if err != nil {
			return
		}
		for _, k := range keys {
			if len(k) != 16 && len(k) != 24 && len(k) != 32 {
				t.Fatalf("accepted a key of %d bytes", len(k))
			}
		}
	})
}
