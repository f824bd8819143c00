package agent

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	msgs := []Message{
		{Type: TypeHello, Hello: &Hello{AgentVersion: "v1", BootID: "b-1", Hostname: "g"}},
		{Type: TypeHeartbeat, Heartbeat: &Heartbeat{Seq: 7, UptimeMS: 12345}},
		{Type: TypeIPs, IPs: &IPs{Addrs: []Addr{{Interface: "eth0", Prefix: netip.MustParsePrefix("10.0.2.15/24")}, {Interface: "eth0", Prefix: netip.MustParsePrefix("fe80::1/64")}}}},
		{Type: TypeIPs, IPs: &IPs{}},
		{Type: TypeFreeze, ID: 3, Freeze: &Freeze{TimeoutMS: 5000}},
		{Type: TypeReply, ID: 3, Freeze: &Freeze{Filesystems: 2}},
		{Type: TypeReply, ID: 4, Error: "no such thing"},
		{Type: TypeShutdown, ID: 9},
	}
	var buf bytes.Buffer
	for _, m := range msgs {
		if err := Encode(&buf, m); err != nil {
			t.Fatalf("encode %+v: %v", m, err)
		}
	}
	d := NewDecoder(&buf)
	var got []Message
	for {
		m, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	want := make([]Message, len(msgs))
	for i, m := range msgs {
		m.V = Version
		want[i] = m
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	for _, m := range []Message{
		{},
		{Type: TypeHello},
		{Type: TypeHeartbeat},
		{Type: TypeReply},
		{Type: TypeFreeze, ID: 1, Freeze: &Freeze{TimeoutMS: -1}},
		{Type: TypeReply, ID: 1, Error: strings.Repeat("x", MaxLine)},
	} {
		var buf bytes.Buffer
		if err := Encode(&buf, m); err == nil {
			t.Errorf("encoded invalid %+v", m)
		}
		if buf.Len() != 0 {
			t.Errorf("invalid %+v wrote %d bytes", m, buf.Len())
		}
	}
}

// TestDecoderSkipsBadLines: a bad or oversized line costs that line
// only; the stream goes on.
func TestDecoderSkipsBadLines(t *testing.T) {
	good := `{"v":1,"type":"heartbeat","heartbeat":{"seq":1,"uptime_ms":5}}`
	in := strings.Join([]string{
		"not json",
		`{"v":1,"type":"hello"}`,
		`{"v":0,"type":"heartbeat","heartbeat":{}}`,
		`{"v":1}`,
		"",
		strings.Repeat("y", MaxLine+10),
		`ng","heartbeat":{"seq":1}}`, // the tail a reconnecting host reads
		good,
		`{"v":2,"type":"future","later":true}`,
	}, "\n")
	d := NewDecoder(strings.NewReader(in))
	var errs []error
	var got []Message
	for {
		m, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLong) {
				t.Fatalf("fatal error on a bad line: %v", err)
			}
			errs = append(errs, err)
			continue
		}
		got = append(got, m)
	}
	if len(errs) != 6 {
		t.Errorf("got %d line errors, want 6: %v", len(errs), errs)
	}
	want := []Message{{V: 1, Type: TypeHeartbeat, Heartbeat: &Heartbeat{Seq: 1, UptimeMS: 5}}, {V: 2, Type: "future"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}

// FuzzDecoder: no input panics the decoder, it always ends, and every
// message it returns encodes and decodes to itself.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"hello","hello":{"agent_version":"x","boot_id":"b","hostname":"h"}}` + "\n"))
	f.Add([]byte(`{"v":1,"type":"ips","ips":{"addrs":[{"interface":"eth0","prefix":"10.0.2.15/24"}]}}` + "\n{\"v\":1,\"type\":\"reply\",\"id\":2}\n"))
	f.Add([]byte(`{"v":1,"type":"fs-freeze","id":1,"freeze":{"timeout_ms":100}}`))
	f.Add([]byte("\n\n{\"v\":1,\"type\":\"heartbeat\",\"heartbeat\":{\"seq\":18446744073709551615,\"uptime_ms\":-1}}\n"))
	f.Add([]byte(`{"v":1,"type":"ips","ips":{"addrs":[{"prefix":"bogus"}]}}`))
	f.Add([]byte("{\"v\":1,\"type\":\"reply\",\"id\":1,\"error\":\"\\u0000\"}\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDecoder(bytes.NewReader(b))
		for i := 0; ; i++ {
			if i > len(b)+1 {
				t.Fatalf("decoder returned more results than lines in %d bytes", len(b))
			}
			m, err := d.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if errors.Is(err, ErrMalformed) || errors.Is(err, ErrTooLong) {
				continue
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			var buf bytes.Buffer
			if err := Encode(&buf, m); err != nil {
				if errors.Is(err, ErrTooLong) {
					continue // escaping can grow a line past the limit
				}
				t.Fatalf("re-encode %+v: %v", m, err)
			}
			again, err := NewDecoder(&buf).Next()
			if err != nil {
				t.Fatalf("decode re-encoded %q: %v", buf.String(), err)
			}
			if diff := cmp.Diff(m, again, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Fatalf("re-encoded message differs (-first +second):\n%s", diff)
			}
		}
	})
}
