package chunksvc

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
)

// TestWitnessServesRegisterOnly: a node without disks may serve the chunk
// service for its register; without a register either, it may not. Its
// replica answers register requests and lists nothing.
func TestWitnessServesRegisterOnly(t *testing.T) {
	reg, err := genreg.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	tlsCfg := &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}
	if err := (ServerConfig{TLS: tlsCfg}).Validate(); err == nil {
		t.Fatal("a server without stores and register validated")
	}
	if err := (ServerConfig{TLS: tlsCfg, Register: reg}).Validate(); err != nil {
		t.Fatalf("a witness server: %v", err)
	}
	ctx := context.Background()
	w := Local(nil).WithRegister(reg)
	vsd := chunkstore.ID{9}
	if err := w.Fence(ctx, vsd, 3); err != nil {
		t.Fatal(err)
	}
	if err := w.RegisterPut(ctx, vsd, 2, []genreg.Entry{{Extent: 1, Gen: 5}}); !errors.Is(err, chunkstore.ErrStaleEpoch) {
		t.Fatalf("put below the fenced epoch: %v, want ErrStaleEpoch", err)
	}
	if err := w.RegisterPut(ctx, vsd, 3, []genreg.Entry{{Extent: 1, Gen: 5}}); err != nil {
		t.Fatal(err)
	}
	if es, err := w.RegisterGet(ctx, vsd, 0); err != nil || len(es) != 1 || es[0].Gen != 5 {
		t.Fatalf("read without fencing: %v, %v", es, err)
	}
	if cs, err := w.Chunks(ctx, vsd); err != nil || len(cs) != 0 {
		t.Fatalf("a witness lists chunks %v, %v", cs, err)
	}
	if _, err := Local(nil).RegisterGet(ctx, vsd, 1); !errors.Is(err, ErrNoRegister) {
		t.Fatalf("register read without a register: %v, want ErrNoRegister", err)
	}
}
