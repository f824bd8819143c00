package qemu

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA is a cluster CA made the way shoal peer makes one (ed25519; a
// node certificate names the node in its common name and a shoal: URI).
type testCA struct {
	cert *x509.Certificate
	key  ed25519.PrivateKey
}

func newTestCA(t testing.TB, cluster string) testCA {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "shoal cluster " + cluster, Organization: []string{cluster}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert, key}
}

// node issues node's credentials; hostname is what the caller checks
// the other side's certificate against.
func (c testCA) node(t testing.TB, node, hostname string) *MigrationTLS {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: node, Organization: c.cert.Subject.Organization},
		URIs: []*url.URL{{Scheme: "shoal", Host: "node", Path: "/" + node}}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &MigrationTLS{CACert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}),
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), Hostname: hostname}
}

// tlsPair is the credentials of a source node "src" and a destination
// node "dst" of one cluster.
func tlsPair(t testing.TB) (src, dst *MigrationTLS) {
	ca := newTestCA(t, "c1")
	src, dst = ca.node(t, "src", "dst"), ca.node(t, "dst", "")
	dst.Peer = "src"
	return src, dst
}

// sniffer forwards one connection to a destination's migration port and
// keeps the first bytes the source sent.
type sniffer struct {
	ln   net.Listener
	mu   sync.Mutex
	head []byte
	wg   sync.WaitGroup
}

// sniff listens on loopback and forwards to the URI tcp:HOST:PORT; its
// URI is returned for the source to migrate to.
func sniff(t *testing.T, uri string) (*sniffer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sniffer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		in, err := ln.Accept()
		if err != nil {
			return
		}
		defer in.Close()
		out, err := net.Dial("tcp", strings.TrimPrefix(uri, "tcp:"))
		if err != nil {
			return
		}
		defer out.Close()
		done := make(chan struct{})
		go func() { defer close(done); io.Copy(in, out); in.(*net.TCPConn).CloseWrite() }()
		buf := make([]byte, 4)
		n, _ := io.ReadFull(in, buf)
		s.mu.Lock()
		s.head = buf[:n]
		s.mu.Unlock()
		out.Write(buf[:n])
		io.Copy(out, in)
		out.(*net.TCPConn).CloseWrite()
		<-done
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s, "tcp:" + ln.Addr().String()
}

// first is the first 4 bytes the source sent.
func (s *sniffer) first() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.head)
}

// Migration credentials that do not fit fail the migration before any
// memory moves, and the source runs on: a destination whose certificate
// is from another cluster's CA or names another node, a source from
// another cluster, a source naming another node than the one expected.
func TestMigrateTLSRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		pki  func(t *testing.T) (src, dst *MigrationTLS)
		// late: the destination refuses the source, which may learn
		// of it only after the switchover. In TLS 1.3 the client's
		// handshake is done before the server has checked the client's
		// certificate (and QEMU checks tls-authz after its handshake),
		// so the source streams the guest's memory into its socket
		// buffer and may reach the switchover before the destination's
		// close comes back.
		late bool
	}{
		{"destination of another CA", func(t *testing.T) (src, dst *MigrationTLS) {
			return newTestCA(t, "c1").node(t, "src", "dst"), newTestCA(t, "c2").node(t, "dst", "")
		}, false},
		{"source of another CA", func(t *testing.T) (src, dst *MigrationTLS) {
			dst = newTestCA(t, "c1").node(t, "dst", "")
			src = newTestCA(t, "c2").node(t, "src", "dst")
			// It trusts the destination's CA too; the destination does
			// not trust its CA.
			src.CACert = append(src.CACert, dst.CACert...)
			return src, dst
		}, true},
		{"destination is another node", func(t *testing.T) (src, dst *MigrationTLS) {
			ca := newTestCA(t, "c1")
			return ca.node(t, "src", "dst"), ca.node(t, "other", "")
		}, false},
		{"source is another node", func(t *testing.T) (src, dst *MigrationTLS) {
			ca := newTestCA(t, "c1")
			dst = ca.node(t, "dst", "")
			dst.Peer = "src"
			return ca.node(t, "other", "dst"), dst
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			srcTLS, dstTLS := tc.pki(t)
			src, _, uri := migratePairTLS(t, 64, false, dstTLS)
			hooked := false
			_, err := src.Migrate(ctx, uri, MigrateOptions{TLS: srcTLS, Switchover: func(context.Context) error { hooked = true; return nil }})
			if tc.late && hooked {
				if !errors.Is(err, ErrMigration) || !errors.Is(err, ErrAfterSwitchover) {
					t.Fatalf("Migrate = %v after the switchover hook ran, want ErrMigration and ErrAfterSwitchover", err)
				}
				t.Logf("refused after the switchover: %v", err)
				wantStatus(t, src, StatusPaused) // Migrate pauses it again; the daemon wins the claim back
				return
			}
			if !errors.Is(err, ErrMigration) || errors.Is(err, ErrAfterSwitchover) || hooked {
				t.Fatalf("Migrate = %v (switchover hook ran: %v), want ErrMigration before the switchover", err, hooked)
			}
			t.Logf("refused: %v", err)
			wantStatus(t, src, StatusRunning)
		})
	}
}

// Bad credentials are refused when they are loaded, and the files
// holding them do not outlive the call.
func TestMigrationTLSBadPEM(t *testing.T) {
	host := testHost(t)
	ctx := testCtx(t)
	dst := startVM(t, host, filepath.Join(t.TempDir(), "dst"), tinySpec("tlspem", 64), true)
	good := newTestCA(t, "c1").node(t, "dst", "")
	bad := *good
	bad.Key = []byte("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
	if _, err := dst.Incoming(ctx, "127.0.0.1:0", false, &bad); err == nil {
		t.Fatal("Incoming with a bad key succeeded")
	}
	if m, _ := filepath.Glob(filepath.Join(dst.Dir(), "migration-tls*")); len(m) != 0 {
		t.Errorf("credential files left behind: %v", m)
	}
}
