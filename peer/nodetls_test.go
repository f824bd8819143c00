package peer

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/ca"
	"github.com/shoal-hci/shoal/peer/internal/identity"
)

// nodeDir writes the identity and cluster.json of a member of c into a
// fresh data dir and returns it with the node ID.
func nodeDir(t *testing.T, c *ca.CA, revoked ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	id, _, err := identity.LoadOrCreate(dir, "", now)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := c.Issue(id.NodeID, id.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	cl := &clusterState{ClusterID: c.ClusterID, CACert: string(c.CertPEM), NodeCert: string(certPEM), Revoked: revoked}
	if err := saveClusterState(dir, cl); err != nil {
		t.Fatal(err)
	}
	return dir, id.NodeID
}

// handshake runs a TLS handshake between a server and a client config and
// returns the server's and the client's error.
func handshake(t *testing.T, server, client *tls.Config) (serr, cerr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		a, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer a.Close()
		a.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(a, server)
		err = s.Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the
			// client's handshake returns; read to learn the verdict.
			_, err = s.Read(make([]byte, 1))
		}
		done <- err
	}()
	b, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(b, client)
	cerr = c.Handshake()
	if cerr == nil {
		_, cerr = c.Write([]byte{1})
	}
	serr = <-done
	b.Close()
	return serr, cerr
}

func TestNodeTLS(t *testing.T) {
	now := time.Now()
	c, err := ca.New("c1", now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.New("c2", now)
	if err != nil {
		t.Fatal(err)
	}
	dirA, idA := nodeDir(t, c)
	dirB, idB := nodeDir(t, c)
	dirX, _ := nodeDir(t, other)

	a, err := LoadNodeTLS(dirA)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadNodeTLS(dirB)
	if err != nil {
		t.Fatal(err)
	}
	x, err := LoadNodeTLS(dirX)
	if err != nil {
		t.Fatal(err)
	}
	if a.NodeID != idA || a.ClusterID != "c1" {
		t.Fatalf("LoadNodeTLS: node %s cluster %s, want %s c1", a.NodeID, a.ClusterID, idA)
	}
	if got, err := a.Verify(b.Cert.Leaf); err != nil || got != idB {
		t.Fatalf("Verify(B) = %q, %v; want %q", got, err, idB)
	}
	if _, err := a.Verify(x.Cert.Leaf); !errors.Is(err, ca.ErrNotMember) {
		t.Fatalf("Verify(other cluster) = %v, want ErrNotMember", err)
	}

	// Members talk; a node of another cluster is refused both ways.
	if serr, cerr := handshake(t, a.ServerTLS(), b.ClientTLS()); serr != nil || cerr != nil {
		t.Fatalf("A serves B: server %v, client %v", serr, cerr)
	}
	if serr, _ := handshake(t, a.ServerTLS(), x.ClientTLS()); serr == nil {
		t.Fatal("A accepted a client of another cluster")
	}
	if _, cerr := handshake(t, x.ServerTLS(), a.ClientTLS()); cerr == nil {
		t.Fatal("A accepted a server of another cluster")
	}
	// A client without a certificate is refused.
	if serr, _ := handshake(t, a.ServerTLS(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}); serr == nil {
		t.Fatal("A accepted a client without a certificate")
	}

	// Peer records B's removal in A's cluster.json: B is refused from then on.
	cl, err := loadClusterState(dirA)
	if err != nil {
		t.Fatal(err)
	}
	cl.Revoked = []string{idB}
	if err := saveClusterState(dirA, cl); err != nil {
		t.Fatal(err)
	}
	if !a.Revoked(idB) {
		t.Fatal("Revoked(B) = false after cluster.json listed it")
	}
	if _, err := a.Verify(b.Cert.Leaf); !errors.Is(err, ca.ErrRevoked) {
		t.Fatalf("Verify(revoked B) = %v, want ErrRevoked", err)
	}
	if serr, _ := handshake(t, a.ServerTLS(), b.ClientTLS()); serr == nil {
		t.Fatal("A accepted revoked B")
	}

	// A leaves its cluster (peer removes cluster.json): nobody is accepted.
	if err := os.Remove(filepath.Join(dirA, clusterFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Verify(b.Cert.Leaf); !errors.Is(err, ErrNotMember) {
		t.Fatalf("Verify after leaving = %v, want ErrNotMember", err)
	}
	if _, err := LoadNodeTLS(dirA); !errors.Is(err, ErrNotMember) {
		t.Fatalf("LoadNodeTLS without cluster.json = %v, want ErrNotMember", err)
	}
	if _, err := LoadNodeTLS(t.TempDir()); !errors.Is(err, ErrNotMember) {
		t.Fatalf("LoadNodeTLS of an empty dir = %v, want ErrNotMember", err)
	}
}
