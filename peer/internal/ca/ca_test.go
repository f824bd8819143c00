package ca

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

func TestIssueAndVerify(t *testing.T) {
	now := time.Now()
	c, err := New("c1", now)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New("c2", now)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	certPEM, err := c.Issue("0123456789abcdef0123456789abcdef", pub, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ca      *CA
		revoked func(string) bool
		want    error
	}{
		{"member", c, nil, nil},
		{"other cluster", other, nil, ErrNotMember},
		{"revoked", c, func(id string) bool { return id == "0123456789abcdef0123456789abcdef" }, ErrRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := tt.ca.Verify(cert, tt.revoked)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify err = %v, want %v", err, tt.want)
			}
			if err == nil && id != "0123456789abcdef0123456789abcdef" {
				t.Errorf("node id = %q", id)
			}
		})
	}
}

func TestParseRoundTrip(t *testing.T) {
	c, _ := New("c1", time.Now())
	kp, _ := c.KeyPEM()
	back, err := Parse(c.CertPEM, kp)
	if err != nil {
		t.Fatal(err)
	}
	if back.ClusterID != "c1" || !back.Key.Equal(c.Key) {
		t.Errorf("round trip: cluster %q, key equal %v", back.ClusterID, back.Key.Equal(c.Key))
	}
	if _, err := Parse([]byte("junk"), nil); !errors.Is(err, ErrBadPEM) {
		t.Errorf("Parse(junk) err = %v, want ErrBadPEM", err)
	}
}

func FuzzParseCert(f *testing.F) {
	c, _ := New("c1", time.Now())
	f.Add(c.CertPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseCert(b)
		ParseKey(b)
	})
}
