package scribe

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // 0: error
	}{
		{"4G", 4 << 30}, {"4g", 4 << 30}, {"4GiB", 4 << 30}, {"4GB", 4 << 30}, {"512M", 512 << 20},
		{"1T", 1 << 40}, {"1.5G", 3 << 29}, {"4096", 4096}, {"4096B", 4096}, {"64K", 64 << 10}, {" 8G ", 8 << 30},
		{"4X", 0}, {"", 0}, {"G", 0}, {"0", 0}, {"-1G", 0}, {"100", 0}, {"1e9", 0}, {"0x10G", 0}, {"inf", 0},
		{"NaN", 0}, {"2P", 0}, {"1P", 1 << 50}, {"1.1K", 0},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("ParseSize(%q) = %d, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"4G", "512M", "1.5G", "4096", "4X", "1e9", "-1G", "1P"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n <= 0 || n > MaxSize || n%4096 != 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		if back, err := ParseSize(FormatSize(n)); err == nil && back != n {
			t.Fatalf("ParseSize(FormatSize(%d) = %q) = %d", n, FormatSize(n), back)
		}
	})
}

func TestFormatSize(t *testing.T) {
	for in, want := range map[int64]string{4 << 30: "4G", 512 << 20: "512M", 3 << 29: "1.5G", 4096: "4K", 100: "100", 0: "0"} {
		if got := FormatSize(in); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"v1", "web-01.disk_0", "0"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "V1", "-a", "a/b", "a b", "ä", string(make([]byte, 64))} {
		if ValidName(bad) == nil {
			t.Errorf("ValidName(%q) = nil, want an error", bad)
		}
	}
}

func record(key string, fields map[string]string) client.StateRecord {
	r := client.StateRecord{Key: key, Fields: map[string]client.StateField{}}
	for k, v := range fields {
		r.Fields[k] = client.StateField{Kind: client.KindRegister, Value: v}
	}
	return r
}

func TestRecordsRoundTrip(t *testing.T) {
	v := VSDRecord{Name: "v1", ID: chunkstore.ID{1, 2}, Size: 4 << 30, Replicas: 3, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	got, err := ParseVSD(record("vsd/v1", v.Fields()))
	if err != nil || !cmp.Equal(got, v) {
		t.Errorf("ParseVSD(Fields) = %+v, %v; want %+v", got, err, v)
	}
	ro := v
	ro.ReadOnly = true
	if got, err := ParseVSD(record("vsd/v1", ro.Fields())); err != nil || !got.ReadOnly {
		t.Errorf("ParseVSD(read-only Fields) = %+v, %v; want read-only", got, err)
	}
	for _, writable := range []string{"", "0"} {
		f := v.Fields()
		f[ReadOnlyField] = writable
		if got, err := ParseVSD(record("vsd/v1", f)); err != nil || got.ReadOnly {
			t.Errorf("ParseVSD(readonly=%q) = %+v, %v; want writable", writable, got, err)
		}
	}
	for _, bad := range []map[string]string{
		{"id": "xx", "size": "4096", "replicas": "2"},
		{"id": v.ID.String(), "size": "-1", "replicas": "2"},
		{"id": v.ID.String(), "size": "4096", "replicas": "7"},
		{"id": v.ID.String(), "size": "4096", "replicas": "2", "readonly": "yes"},
	} {
		if _, err := ParseVSD(record("vsd/v1", bad)); err == nil {
			t.Errorf("ParseVSD(%v) succeeded", bad)
		}
	}
	n := NodeRecord{Node: "n1", Addr: "[fd53::1]:7948", Disks: []DiskInfo{{ID: chunkstore.ID{3}, Path: "/dev/sdb", Size: 10, Free: 5}}}
	gotN, err := ParseNode(record("scribe/n1", n.Fields()))
	if err != nil || !cmp.Equal(gotN, n) {
		t.Errorf("ParseNode(Fields) = %+v, %v; want %+v", gotN, err, n)
	}
	s := VSDStatus{Owner: "n1", Epoch: 4, Allocated: 1 << 20, Extents: 1, Degraded: 1, Updated: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	if got := ParseVSDStatus(record("vsd-status/v1", s.Fields())); !cmp.Equal(got, s) {
		t.Errorf("ParseVSDStatus(Fields) = %+v, want %+v", got, s)
	}
}
