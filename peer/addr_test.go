package peer_test

import (
	"net"
	"testing"

	"github.com/shoal-hci/shoal/peer"
)

func TestAutoBind(t *testing.T) {
	tests := []struct {
		name  string
		addrs []string
		want  string
	}{
		{"backplane first", []string{"127.0.0.1", "10.88.0.3", "fe80::1", "fd53:686f:616c::3"}, "fd53:686f:616c::3"},
		{"global when no backplane", []string{"127.0.0.1", "fe80::1", "10.88.0.3"}, "10.88.0.3"},
		{"never loopback or link-local", []string{"127.0.0.1", "::1", "fe80::1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ips []net.IP
			for _, a := range tt.addrs {
				ips = append(ips, net.ParseIP(a))
			}
			got, err := peer.AutoBind(ips)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("AutoBind = %v, want an error", got)
				}
				return
			}
			if err != nil || !got.Equal(net.ParseIP(tt.want)) {
				t.Errorf("AutoBind = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}
