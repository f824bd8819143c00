package imagebuild

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func validConfig() Config {
	c := DefaultConfig()
	c.OutDir, c.Version, c.Shoal, c.UpdateKey = "out", "1.0.0", "bin/shoal", []byte("k")
	return c
}

func TestValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	if err := DefaultConfig().Validate(); err == nil {
		t.Error("DefaultConfig without OutDir, Version, Shoal and key validated")
	}
	tests := []struct {
		name  string
		edit  func(*Config)
		wants string
	}{
		{"version with slash", func(c *Config) { c.Version = "1/2" }, "version"},
		{"version with plus", func(c *Config) { c.Version = "1+2" }, "version"},
		{"no key", func(c *Config) { c.UpdateKey = nil }, "UpdateKey"},
		{"tiny slot", func(c *Config) { c.SlotMiB = 10 }, "slot"},
		{"no tries", func(c *Config) { c.Tries = 0 }, "tries"},
		{"zstd 30", func(c *Config) { c.CompressionLevel = 30 }, "zstd"},
		{"no packages", func(c *Config) { c.Packages = nil }, "package list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.wants) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.wants)
			}
		})
	}
}

func TestNames(t *testing.T) {
	c := validConfig()
	got := []string{
		UKIName("1.0.0", 3),
		c.SlotCmdline("b"),
		string(LoaderConf(0)),
		string(OSRelease("1.0.0", "a")),
	}
	want := []string{
		"shoal-1.0.0+3.efi",
		"root=PARTLABEL=shoal-root-b ro rootfstype=squashfs console=tty0 console=ttyS0,115200 panic=10",
		"timeout 0\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\n",
		"NAME=\"Shoal\"\nID=shoal\nID_LIKE=debian\nPRETTY_NAME=\"Shoal 1.0.0 (slot A)\"\nVERSION=\"1.0.0\"\nVERSION_ID=\"1.0.0\"\nIMAGE_ID=shoal\nIMAGE_VERSION=\"1.0.0\"\nHOME_URL=\"https://github.com/shoal-hci/shoal\"\n",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
