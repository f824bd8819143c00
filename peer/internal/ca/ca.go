// Package ca is a cluster's certificate authority: an ed25519 CA created
// by the node that forms the cluster and handed to every admitted member
// (there is no leader, so any member can admit), node certificates whose
// common name is the node ID, and the TLS configurations of the node API
// (mutual TLS between members; a joining node that has no certificate yet
// presents a self-signed one made from its identity key).
//
// Revocation is a set of node IDs checked on every handshake through the
// Revoked callback; certificates themselves are long-lived.
package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// Sentinel errors.
var (
	ErrNotMember = errors.New("certificate is not signed by this cluster's CA")
	ErrRevoked   = errors.New("node was removed from the cluster")
	ErrBadPEM    = errors.New("bad PEM data")
)

// validity of CA and node certificates: long, since nodes are removed by
// revocation, not by expiry.
const validity = 100 * 365 * 24 * time.Hour

// CA is a cluster's certificate authority.
type CA struct {
	ClusterID string
	Cert      *x509.Certificate
	CertPEM   []byte
	Key       ed25519.PrivateKey
}

// New creates a CA for clusterID.
func New(clusterID string, now time.Time) (*CA, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "shoal cluster " + clusterID, Organization: []string{clusterID}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &CA{ClusterID: clusterID, Cert: cert, CertPEM: pemEncode("CERTIFICATE", der), Key: key}, nil
}

// Parse loads a CA from its certificate and (optional) key in PEM.
func Parse(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || len(cert.Subject.Organization) != 1 {
		return nil, fmt.Errorf("%w: not a shoal cluster CA", ErrBadPEM)
	}
	c := &CA{ClusterID: cert.Subject.Organization[0], Cert: cert, CertPEM: certPEM}
	if len(keyPEM) > 0 {
		k, err := ParseKey(keyPEM)
		if err != nil {
			return nil, err
		}
		c.Key = k
	}
	return c, nil
}

// KeyPEM returns the CA key in PEM (PKCS#8).
func (c *CA) KeyPEM() ([]byte, error) { return KeyPEM(c.Key) }

// Issue signs a certificate for nodeID's public key.
func (c *CA) Issue(nodeID string, pub ed25519.PublicKey, now time.Time) ([]byte, error) {
	if c.Key == nil {
		return nil, errors.New("this node holds no CA key")
	}
	tmpl := nodeTemplate(c.ClusterID, nodeID, now)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, pub, c.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for node %s: %w", nodeID, err)
	}
	return pemEncode("CERTIFICATE", der), nil
}

// SelfSigned makes the certificate a node presents before it is admitted.
func SelfSigned(nodeID string, key ed25519.PrivateKey, now time.Time) (tls.Certificate, error) {
	tmpl := nodeTemplate("", nodeID, now)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-sign certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// KeyPair builds a tls.Certificate from a node certificate and key.
func KeyPair(certPEM []byte, key ed25519.PrivateKey) (tls.Certificate, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

func nodeTemplate(clusterID, nodeID string, now time.Time) *x509.Certificate {
	u := &url.URL{Scheme: "shoal", Host: "node", Path: "/" + nodeID}
	var org []string
	if clusterID != "" {
		org = []string{clusterID}
	}
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID, Organization: org},
		URIs:         []*url.URL{u},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
}

// Verify checks that cert was signed by this CA and that its node is not
// revoked, and returns the node ID.
func (c *CA) Verify(cert *x509.Certificate, revoked func(nodeID string) bool) (string, error) {
	pool := x509.NewCertPool()
	pool.AddCert(c.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotMember, err)
	}
	id := cert.Subject.CommonName
	if revoked != nil && revoked(id) {
		return id, fmt.Errorf("%w: node %s", ErrRevoked, id)
	}
	return id, nil
}

// ServerTLS is the node API's server configuration: it presents cert and
// asks for (but does not require) a client certificate; handlers decide
// per endpoint with PeerNodeID.
func ServerTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

// ClientTLS is the configuration a node uses to call another member: it
// presents cert and accepts only a server certificate from c that is not
// revoked.
func (c *CA) ClientTLS(cert tls.Certificate, revoked func(string) bool) *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // verified below against the cluster CA; certificates carry node IDs, not host names
		MinVersion:         tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrNotMember
			}
			_, err := c.Verify(cs.PeerCertificates[0], revoked)
			return err
		},
	}
}

// JoinerTLS is the configuration of a node that is not yet a member: it
// presents its self-signed certificate and accepts a server certificate
// signed by a CA of clusterID (any clusterID when empty), whose PEM is
// sent in the chain. It learns the CA this way (trust on first use on the
// private backplane; the `code` policy adds a check by a human).
func JoinerTLS(self tls.Certificate, clusterID string) *tls.Config {
	return &tls.Config{
		Certificates:       []tls.Certificate{self},
		InsecureSkipVerify: true, // the joiner does not know the CA yet
		MinVersion:         tls.VersionTLS13,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return ErrNotMember
			}
			leaf := cs.PeerCertificates[0]
			if clusterID != "" && (len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != clusterID) {
				return fmt.Errorf("%w: server belongs to cluster %v, want %s", ErrNotMember, leaf.Subject.Organization, clusterID)
			}
			return nil
		},
	}
}

// ParseCert decodes one PEM certificate.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: want a CERTIFICATE block", ErrBadPEM)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPEM, err)
	}
	return cert, nil
}

// ParseKey decodes a PEM PKCS#8 ed25519 key.
func ParseKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: want a PRIVATE KEY block", ErrBadPEM)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPEM, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: key is not ed25519", ErrBadPEM)
	}
	return ek, nil
}

// KeyPEM encodes an ed25519 key as PEM PKCS#8.
func KeyPEM(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pemEncode("PRIVATE KEY", der), nil
}

func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}
