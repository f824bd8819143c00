package claim

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestVoterSet(t *testing.T) {
	v, err := NewVoterSet("c", "a", "b", "a")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"a", "b", "c"}, v.IDs()); d != "" {
		t.Errorf("ids (-want +got):\n%s", d)
	}
	if v.Majority() != 2 || !v.Contains("b") || v.Contains("d") {
		t.Errorf("majority %d, contains b %v, contains d %v", v.Majority(), v.Contains("b"), v.Contains("d"))
	}
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 32: 17} {
		if got := (VoterSet{ids: make([]string, n)}).Majority(); got != want {
			t.Errorf("majority of %d = %d, want %d", n, got, want)
		}
	}
	if _, err := NewVoterSet("a", "bad id"); err == nil {
		t.Error("NewVoterSet accepted a bad id")
	}
}

// TestSingleChangeKeepsQuorumsIntersecting is the arithmetic behind the
// one-change-at-a-time rule: with N voters before and N±1 after (sharing
// all but the changed node), any majority of the old set and any majority
// of the new set share a voter; after two changes at once they need not.
func TestSingleChangeKeepsQuorumsIntersecting(t *testing.T) {
	maj := func(n int) int { return n/2 + 1 }
	for n := 1; n <= 64; n++ {
		// Removing one: old set n, new set n-1 inside it. Two majorities of
		// sets inside a universe of n voters intersect iff their sizes sum
		// above n.
		if n > 1 && maj(n)+maj(n-1) <= n {
			t.Errorf("remove one from %d: majorities %d and %d can be disjoint", n, maj(n), maj(n-1))
		}
		// Adding one: universe n+1.
		if maj(n)+maj(n+1) <= n+1 {
			t.Errorf("add one to %d: majorities %d and %d can be disjoint", n, maj(n), maj(n+1))
		}
	}
	// Two removals at once from 5: majorities of 3 (of 5) and 2 (of 3) can be disjoint.
	if maj(5)+maj(3) > 5 {
		t.Error("expected the two-at-once counterexample to hold")
	}
}
