package client

import "testing"

func TestClaimFromState(t *testing.T) {
	reg := func(v string) StateField { return StateField{Kind: KindRegister, Value: v} }
	for _, tc := range []struct {
		name string
		rec  StateRecord
		want Claim
		ok   bool
	}{
		{"one epoch", StateRecord{Key: "claim/vm/web1", Fields: map[string]StateField{"e1": reg("n1")}}, Claim{"vm/web1", 1, "n1"}, true},
		{"highest wins", StateRecord{Key: "claim/vm/web1", Fields: map[string]StateField{"e2": reg("n2"), "e10": reg("n3"), "e9": reg("n1")}}, Claim{"vm/web1", 10, "n3"}, true},
		{"cleared field ignored", StateRecord{Key: "claim/upgrade", Fields: map[string]StateField{"e3": reg(""), "e2": reg("n2")}}, Claim{"upgrade", 2, "n2"}, true},
		{"other fields ignored", StateRecord{Key: "claim/x", Fields: map[string]StateField{"note": reg("n9"), "e": reg("n9"), "e0": reg("n9"), "e01": reg("n9"), "e+1": reg("n9"), "e4": reg("n4")}}, Claim{"x", 4, "n4"}, true},
		{"no epoch", StateRecord{Key: "claim/x", Fields: map[string]StateField{"note": reg("n9")}}, Claim{}, false},
		{"not a claim record", StateRecord{Key: "vm/x", Fields: map[string]StateField{"e1": reg("n1")}}, Claim{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ClaimFromState(tc.rec)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ClaimFromState = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	if k, f := ClaimRecordKey("vm/a"), ClaimEpochField(7); k != "claim/vm/a" || f != "e7" {
		t.Errorf("key %q field %q", k, f)
	}
}
