package peer_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"

	"github.com/shoal-hci/shoal/peer"
	"github.com/shoal-hci/shoal/peer/peertest"
)

// echoService answers with the caller's node ID and hands its Mesh to the test.
type echoService struct {
	mu   sync.Mutex
	mesh peer.Mesh
}

func (s *echoService) Name() string { return "echo" }
func (s *echoService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, peer.PeerNodeID(r))
}
func (s *echoService) Run(ctx context.Context, m peer.Mesh) error {
	s.mu.Lock()
	s.mesh = m
	s.mu.Unlock()
	<-ctx.Done()
	return nil
}
func (s *echoService) get() peer.Mesh {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mesh
}

func TestServiceOverMutualTLS(t *testing.T) {
	svcs := []*echoService{{}, {}}
	i := 0
	c := peertest.NewCluster(t, 2, func(cfg *peer.Config) {
		cfg.Services = []peer.Service{svcs[i]}
		i++
	})
	var m peer.Mesh
	c.WaitFor("service running", func() bool { m = svcs[0].get(); return m != nil })
	other := c.Nodes[1].ID()
	if m.Self() == other {
		other = c.Nodes[0].ID()
	}
	url, err := m.URL(other, "/v1/svc/echo/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := m.HTTPClient().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != m.Self() {
		t.Errorf("echo = %d %q, want 200 and the caller's node ID %s", resp.StatusCode, b, m.Self())
	}
	// Without a member certificate: refused with 403.
	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp2, err := plain.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusForbidden {
		t.Errorf("client without certificate got %d, want 403", resp2.StatusCode)
	}
}

func TestSocketMode(t *testing.T) {
	c := peertest.NewCluster(t, 1)
	st, err := os.Stat(c.Nodes[0].Config.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %o, want 600", st.Mode().Perm())
	}
}
