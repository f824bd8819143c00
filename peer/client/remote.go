package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultAPIPort is the node API's port (HTTPS, mutual TLS between members).
const DefaultAPIPort = 7443

// Errors of a remote client (NewRemote), matched with errors.Is.
var (
	// ErrRefused: nothing listens on the address (shoal peer is not
	// running there, or the port is wrong).
	ErrRefused = errors.New("connection refused")
	// ErrUnreachable: no answer at all (wrong address, host down, no route).
	ErrUnreachable = errors.New("unreachable")
)

// NewRemote returns a client of a member's node API at addr (host or
// host:port, port 7443 when omitted; a bare IPv6 address is fine) that
// serves the read-only calls Status, Nodes and Events, as the local API
// of that node would answer them. tc is this node's mutual-TLS client
// configuration (peer.LoadNodeTLS(dataDir).ClientTLS()): it presents this
// node's certificate and must verify the server against the cluster CA.
// Other calls fail on a remote client (the node API does not serve them).
func NewRemote(addr string, tc *tls.Config) *Client {
	addr = RemoteAddr(addr)
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: tc, TLSHandshakeTimeout: 5 * time.Second,
		ForceAttemptHTTP2: true}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: "https://" + addr, remote: addr}
}

// RemoteAddr normalises a node API address to host:port: the port is 7443
// when omitted, and a bare IPv6 address gets brackets.
func RemoteAddr(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	return net.JoinHostPort(host, strconv.Itoa(DefaultAPIPort))
}

// remoteError explains a failed call of a member's node API at addr.
func remoteError(addr string, err error) error {
	var nerr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("node API at %s: %w: is `shoal peer` running on that node, and is %s its node API port (default %d)?", addr, ErrRefused, portOf(addr), DefaultAPIPort)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &nerr) && nerr.Timeout():
		return fmt.Errorf("node API at %s is %w: %v (check the address: members answer on their backplane address)", addr, ErrUnreachable, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL), isDNS(err):
		return fmt.Errorf("node API at %s is %w: %v (check the address)", addr, ErrUnreachable, err)
	}
	return fmt.Errorf("call node API at %s: %w", addr, err)
}

func isDNS(err error) bool {
	var d *net.DNSError
	return errors.As(err, &d)
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}
