package claim

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

const testPrefix = "/v1/svc/claim"

// httpCluster is nodes serving Handler on loopback, calling each other
// through HTTPTransport; the caller's ID travels in a header (the daemon
// takes it from the verified client certificate instead).
func httpCluster(t *testing.T, ids ...string) map[string]*Node {
	t.Helper()
	voters, err := NewVoterSet(ids...)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	urls := map[string]string{}
	nodes := map[string]*Node{}
	for i, id := range ids {
		tr := &HTTPTransport{
			Prefix: testPrefix,
			Client: func() *http.Client { return &http.Client{Transport: headerRT{id}} },
			URL: func(to, path string) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				u, ok := urls[to]
				if !ok {
					return "", fmt.Errorf("no address for node %s", to)
				}
				return u + path, nil
			},
		}
		cfg := DefaultConfig(id)
		cfg.Incarnation = uint64(i + 1)
		n, err := New(cfg, NewMemStore(), tr, voters)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(n.Handler(testPrefix, func(r *http.Request) string { return r.Header.Get("X-Node") }))
		t.Cleanup(func() {
			srv.Close()
			n.Close()
			if err := n.Check(); err != nil {
				t.Error(err)
			}
		})
		mu.Lock()
		urls[id] = srv.URL
		mu.Unlock()
		nodes[id] = n
	}
	return nodes
}

type headerRT struct{ id string }

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Node", h.id)
	return http.DefaultTransport.RoundTrip(r)
}

func TestHTTPTransport(t *testing.T) {
	nodes := httpCluster(t, "a", "b", "c")
	for _, n := range nodes {
		for id := range nodes {
			if err := n.t.Ping(t.Context(), id); err != nil {
				t.Fatalf("ping %s: %v", id, err)
			}
			n.Heard(id)
		}
	}
	if _, err := nodes["a"].Propose(t.Context(), "vm/1", 1, "a"); err != nil {
		t.Fatal(err)
	}
	got, err := nodes["b"].Propose(t.Context(), "vm/1", 1, "b")
	if !errors.Is(err, ErrTaken) || got.Holder != "a" {
		t.Errorf("second claim over HTTP: %+v, %v; want ErrTaken naming a", got, err)
	}
	v, err := nodes["c"].Read(t.Context(), "vm/1")
	if err != nil {
		t.Fatal(err)
	}
	if v.Holder != "a" || v.Epoch != 1 || v.State != StateHeld {
		t.Errorf("read over HTTP: %+v", v)
	}
}

func TestHTTPHandlerRefusals(t *testing.T) {
	voters, err := NewVoterSet("a", "b")
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(DefaultConfig("a"), NewMemStore(), NewMemTransport().From("a"), voters)
	if err != nil {
		t.Fatal(err)
	}
	h := n.Handler(testPrefix, func(r *http.Request) string { return r.Header.Get("X-Node") })
	good := `{"resource":"vm/1","epoch":1,"ballot":{"round":1,"node":"b","inc":1}}`
	tests := []struct {
		name, method, path, from, body string
		want                           int
	}{
		{"prepare", "POST", PathPrepare, "b", good, http.StatusOK},
		{"ping", "GET", PathPing, "b", "", http.StatusNoContent},
		{"non-voter prepare", "POST", PathPrepare, "x", good, http.StatusForbidden},
		{"non-voter ping", "GET", PathPing, "x", "", http.StatusForbidden},
		{"anonymous", "POST", PathRead, "", `{"resource":"vm/1"}`, http.StatusForbidden},
		{"bad json", "POST", PathAccept, "b", `{"resource":`, http.StatusBadRequest},
		{"invalid request", "POST", PathPrepare, "b", `{"resource":"vm/1","epoch":0}`, http.StatusBadRequest},
		{"too large", "POST", PathRead, "b", `{"resource":"` + strings.Repeat("x", MaxMessageSize) + `"}`, http.StatusBadRequest},
		{"wrong method", "GET", PathPrepare, "b", "", http.StatusMethodNotAllowed},
		{"ballot of another node", "POST", PathPrepare, "a", `{"resource":"vm/2","epoch":1,"ballot":{"round":1,"node":"b","inc":1}}`, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, testPrefix+tt.path, strings.NewReader(tt.body))
			if tt.from != "" {
				r.Header.Set("X-Node", tt.from)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("status %d, want %d: %s", w.Code, tt.want, w.Body)
			}
		})
	}
	// Only the good prepare changed anything.
	all, err := n.LocalAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].Epoch != 1 || all[0].State != StateOpen {
		t.Errorf("state after the requests: %+v", all)
	}
}
