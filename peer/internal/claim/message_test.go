package claim

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidate(t *testing.T) {
	b := ballot(1, "n1")
	tests := []struct {
		name string
		v    validator
		ok   bool
	}{
		{"prepare", PrepareRequest{"vm/1", 1, b}, true},
		{"prepare epoch 0", PrepareRequest{"vm/1", 0, b}, false},
		{"prepare zero ballot", PrepareRequest{"vm/1", 1, Ballot{}}, false},
		{"prepare round 0", PrepareRequest{"vm/1", 1, Ballot{Node: "n1"}}, false},
		{"prepare long resource", PrepareRequest{strings.Repeat("x", 257), 1, b}, false},
		{"prepare resource with space", PrepareRequest{"vm 1", 1, b}, false},
		{"accept", AcceptRequest{"vsd/ab:1", 2, b, "node-1"}, true},
		{"accept no holder", AcceptRequest{"vsd/ab", 2, b, ""}, false},
		{"read", ReadRequest{"upgrade"}, true},
		{"read empty", ReadRequest{""}, false},
		{"record zero", Record{}, true},
		{"record promise", Record{Epoch: 2, Promised: b}, true},
		{"record no promise", Record{Epoch: 2}, false},
		{"record accepted old epoch", Record{Epoch: 3, Promised: b, Accepted: &Accepted{2, ballot(9, "z"), "n1"}}, true},
		{"record accepted future epoch", Record{Epoch: 3, Promised: b, Accepted: &Accepted{4, b, "n1"}}, false},
		{"record accepted above promise", Record{Epoch: 3, Promised: b, Accepted: &Accepted{3, ballot(2, "n1"), "n1"}}, false},
		{"record epoch 0 with value", Record{Accepted: &Accepted{1, b, "n1"}}, false},
		{"reply", Reply{OK: true, Record: Record{Epoch: 1, Promised: b}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.v.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	b := ballot(3, "n2")
	rec := Record{Epoch: 4, Promised: b, Accepted: &Accepted{4, b, "n2"}}
	enc := func(v validator) []byte {
		t.Helper()
		out, err := Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	p, err := DecodePrepare(enc(PrepareRequest{"vm/1", 4, b}))
	if err != nil || p != (PrepareRequest{"vm/1", 4, b}) {
		t.Errorf("prepare round trip: %+v, %v", p, err)
	}
	a, err := DecodeAccept(enc(AcceptRequest{"vm/1", 4, b, "n2"}))
	if err != nil || a != (AcceptRequest{"vm/1", 4, b, "n2"}) {
		t.Errorf("accept round trip: %+v, %v", a, err)
	}
	rd, err := DecodeRead(enc(ReadRequest{"vm/1"}))
	if err != nil || rd != (ReadRequest{"vm/1"}) {
		t.Errorf("read round trip: %+v, %v", rd, err)
	}
	rp, err := DecodeReply(enc(Reply{OK: true, Record: rec}))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Reply{OK: true, Record: rec}, rp); d != "" {
		t.Errorf("reply round trip (-want +got):\n%s", d)
	}
	if _, err := Encode(PrepareRequest{}); err == nil {
		t.Error("Encode of an invalid request succeeded")
	}
	for _, bad := range []string{"", "{", `{"resource":"vm/1","epoch":1,"ballot":{"round":1,"node":"a"}} {}`, "null", strings.Repeat(" ", MaxMessageSize+1)} {
		if _, err := DecodePrepare([]byte(bad)); err == nil {
			t.Errorf("DecodePrepare(%.40q) succeeded", bad)
		}
	}
}

// fuzzSeeds is the corpus shared by the decoders' fuzz targets.
var fuzzSeeds = []string{
	`{"resource":"vm/1","epoch":1,"ballot":{"round":1,"node":"n1","inc":7}}`,
	`{"resource":"vm/1","epoch":2,"ballot":{"round":3,"node":"n1","inc":7},"holder":"n2"}`,
	`{"resource":"vm/1"}`,
	`{"ok":true,"record":{"epoch":2,"promised":{"round":3,"node":"n1","inc":7},"accepted":{"epoch":2,"ballot":{"round":3,"node":"n1","inc":7},"holder":"n2"}}}`,
	`{"epoch":2,"promised":{"round":3,"node":"n1"},"accepted":{"epoch":1,"ballot":{"round":9,"node":"z"},"holder":"n2"}}`,
	`{"epoch":18446744073709551615,"promised":{"round":18446744073709551615,"node":"n"}}`,
	`{"resource":"","epoch":-1}`,
	`[]`, `null`, `{"ok":"yes"}`,
}

func fuzzDecoder[T validator](f *testing.F, dec func([]byte) (T, error)) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := dec(b)
		if err != nil {
			return
		}
		if err := v.Validate(); err != nil {
			t.Fatalf("decoded value fails validation: %v", err)
		}
		again, err := Encode(v)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		w, err := dec(again)
		if err != nil {
			t.Fatalf("decode of re-encoded %s: %v", again, err)
		}
		if d := cmp.Diff(v, w); d != "" {
			t.Fatalf("round trip changed the value (-first +second):\n%s", d)
		}
	})
}

func FuzzDecodePrepare(f *testing.F) { fuzzDecoder(f, DecodePrepare) }
func FuzzDecodeAccept(f *testing.F)  { fuzzDecoder(f, DecodeAccept) }
func FuzzDecodeRead(f *testing.F)    { fuzzDecoder(f, DecodeRead) }
func FuzzDecodeReply(f *testing.F)   { fuzzDecoder(f, DecodeReply) }
func FuzzDecodeRecord(f *testing.F)  { fuzzDecoder(f, DecodeRecord) }
