package peer

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/shoal-hci/shoal/peer/internal/ca"
	"github.com/shoal-hci/shoal/peer/internal/identity"
)

// NodeTLS is this node's cluster credentials for other daemons of the node
// (scribe's chunk service): its certificate signed by the cluster CA, the
// CA, and the TLS configurations of mutual-TLS links between members.
//
// It reads what `shoal peer` keeps in the data dir (identity.json,
// cluster.json) and never writes there. Revocations are re-read from
// cluster.json whenever the file changes (checked on every Verify, one
// stat), so a node removed with `shoal node remove` is refused by the next
// handshake after peer recorded the removal. If cluster.json disappears
// (this node left the cluster) every peer is refused.
//
// A NodeTLS is safe for concurrent use.
type NodeTLS struct {
	NodeID    string
	ClusterID string
	// Cert is this node's certificate and key.
	Cert tls.Certificate
	// Pool holds the cluster CA certificate.
	Pool *x509.CertPool

	path string
	ca   *ca.CA

	mu      sync.Mutex
	stamp   fileStamp
	revoked []string
	gone    bool // cluster.json vanished or changed cluster: refuse everyone
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// CACertPEM returns the cluster CA certificate, PEM-encoded, for tools
// that take their credentials as files (QEMU's tls-creds-x509).
func (n *NodeTLS) CACertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: n.ca.Cert.Raw})
}

// LoadNodeTLS reads this node's identity and cluster credentials from the
// peer data dir. It fails with an error matching ErrNotMember when the
// node is in no cluster (no cluster.json yet).
func LoadNodeTLS(dataDir string) (*NodeTLS, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, identity.FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load node credentials: no identity in %s: %w", dataDir, ErrNotMember)
	}
	if err != nil {
		return nil, fmt.Errorf("load node credentials: %w", err)
	}
	id, err := identity.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("load node credentials: %w", err)
	}
	cl, st, err := readClusterFile(dataDir)
	if err != nil {
		return nil, err
	}
	if cl == nil {
		return nil, fmt.Errorf("load node credentials: no %s in %s: %w", clusterFile, dataDir, ErrNotMember)
	}
	c, err := ca.Parse([]byte(cl.CACert), nil)
	if err != nil {
		return nil, fmt.Errorf("load node credentials: cluster CA: %w", err)
	}
	cert, err := ca.KeyPair([]byte(cl.NodeCert), id.Key)
	if err != nil {
		return nil, fmt.Errorf("load node credentials: node certificate: %w", err)
	}
	if cn := cert.Leaf.Subject.CommonName; cn != id.NodeID {
		return nil, fmt.Errorf("load node credentials: certificate is for node %s, not this node %s", cn, id.NodeID)
	}
	if _, err := c.Verify(cert.Leaf, nil); err != nil {
		return nil, fmt.Errorf("load node credentials: node certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert)
	return &NodeTLS{
		NodeID: id.NodeID, ClusterID: cl.ClusterID, Cert: cert, Pool: pool,
		path: filepath.Join(dataDir, clusterFile), ca: c,
		stamp: st, revoked: slices.Clone(cl.Revoked),
	}, nil
}

// readClusterFile returns the cluster state in dir and its stamp, or nil
// when there is none.
func readClusterFile(dir string) (*clusterState, fileStamp, error) {
	path := filepath.Join(dir, clusterFile)
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fileStamp{}, nil
	}
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("load node credentials: %w", err)
	}
	cl, err := loadClusterState(dir)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("load node credentials: %w", err)
	}
	return cl, fileStamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// refresh re-reads revocations when cluster.json changed (n.mu held).
func (n *NodeTLS) refresh() {
	fi, err := os.Stat(n.path)
	if err != nil {
		n.gone = true
		return
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if st == n.stamp {
		return
	}
	cl, err := loadClusterState(filepath.Dir(n.path))
	if err != nil || cl == nil {
		// Mid-rewrite files are replaced atomically, so a bad file is
		// really bad: refuse until it is fixed.
		n.gone = true
		return
	}
	n.stamp = st
	n.gone = cl.ClusterID != n.ClusterID
	n.revoked = slices.Clone(cl.Revoked)
}

// Revoked reports whether nodeID was removed from the cluster.
func (n *NodeTLS) Revoked(nodeID string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.refresh()
	return n.gone || slices.Contains(n.revoked, nodeID)
}

// Verify checks that cert is a node certificate of this cluster whose node
// is not revoked, and returns its node ID.
func (n *NodeTLS) Verify(cert *x509.Certificate) (string, error) {
	n.mu.Lock()
	n.refresh()
	gone := n.gone
	n.mu.Unlock()
	if gone {
		return "", fmt.Errorf("%w (this node's %s changed: it left or changed cluster)", ErrNotMember, clusterFile)
	}
	return n.ca.Verify(cert, n.Revoked)
}

// verifyConn is the VerifyConnection of both sides.
func (n *NodeTLS) verifyConn(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: no certificate presented", ca.ErrNotMember)
	}
	_, err := n.Verify(cs.PeerCertificates[0])
	return err
}

// ServerTLS is the configuration of a mutual-TLS server between members:
// it presents this node's certificate and requires a client certificate
// that Verify accepts.
func (n *NodeTLS) ServerTLS() *tls.Config {
	return &tls.Config{
		Certificates:     []tls.Certificate{n.Cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        n.Pool,
		MinVersion:       tls.VersionTLS13,
		VerifyConnection: n.verifyConn, // revocations
	}
}

// ClientTLS is the configuration to call another member's mutual-TLS
// server: it presents this node's certificate and accepts only a server
// certificate that Verify accepts. Certificates carry node IDs, not host
// names, so the server's name is not checked; call Verify on the
// connection's peer certificate to learn which node answered.
func (n *NodeTLS) ClientTLS() *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{n.Cert},
		InsecureSkipVerify: true, // verified in VerifyConnection against the cluster CA
		MinVersion:         tls.VersionTLS13,
		VerifyConnection:   n.verifyConn,
	}
}
