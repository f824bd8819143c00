package backplane

import (
	"fmt"
	"net/netip"
	"testing"
)

func TestAddressStableAndInPrefix(t *testing.T) {
	tests := []struct{ id string }{
		{"0123456789abcdef0123456789abcdef"},
		{"ffffffffffffffffffffffffffffffff"},
	}
	seen := map[netip.Prefix]string{}
	for _, tt := range tests {
		a, err := Address(tt.id)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := Address(tt.id)
		if a != b {
			t.Errorf("Address(%s) not stable: %s then %s", tt.id, a, b)
		}
		if a.Bits() != 64 || !Prefix.Contains(a.Addr()) {
			t.Errorf("Address(%s) = %s, not a /64 in %s", tt.id, a, Prefix)
		}
		if other, dup := seen[a]; dup {
			t.Errorf("%s and %s share %s", tt.id, other, a)
		}
		seen[a] = tt.id
	}
	if _, err := Address(""); err == nil {
		t.Error("empty node ID gave an address")
	}
}

func TestAddressPinned(t *testing.T) {
	got, err := Address("0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	const want = "fd53:686f:616c:0:2716:4a11:2fc:e621/64"
	if got.String() != want {
		t.Errorf("Address changed: got %s, want %s (every node's backplane address would move)", got, want)
	}
}

func TestReserved(t *testing.T) {
	tests := []struct {
		iid  uint64
		want bool
	}{
		{0, true},
		{0x02005EFFFE000000, true},
		{0x02005EFFFE005213, true},
		{0x02005EFFFE00FFFF, true},
		{0x02005EFFFE010000, false},
		{0xFDFFFFFFFFFFFF7F, false},
		{0xFDFFFFFFFFFFFF80, true},
		{0xFFFFFFFFFFFFFFFF, true},
		{1, false},
	}
	for _, tt := range tests {
		if got := Reserved(tt.iid); got != tt.want {
			t.Errorf("Reserved(%#x) = %v, want %v", tt.iid, got, tt.want)
		}
	}
}

func TestNoCollisionsInSample(t *testing.T) {
	seen := map[netip.Prefix]bool{}
	for i := range 10000 {
		a, err := Address(fmt.Sprintf("%032x", i))
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("collision at %d: %s", i, a)
		}
		seen[a] = true
	}
}
