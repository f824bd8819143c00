package chunksvc

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoal-hci/shoal/scribe/internal/chunkstore"
	"github.com/shoal-hci/shoal/scribe/internal/genreg"
)

// ErrNoRegister: the node keeps no generation register.
var ErrNoRegister = errors.New("node keeps no generation register")

// MaxRegisterEntries bounds the entries of one RegisterPut.
const MaxRegisterEntries = MaxData / genreg.EntrySize

// WithRegister makes l serve reg as this node's generation register (nil:
// none) and returns l.
func (l *LocalReplica) WithRegister(reg *genreg.Dir) *LocalReplica {
	l.reg = reg
	return l
}

// RegisterGet fences vsd's register at epoch and returns its entries.
func (l *LocalReplica) RegisterGet(ctx context.Context, vsd chunkstore.ID, epoch uint64) ([]genreg.Entry, error) {
	if l.reg == nil {
		return nil, ErrNoRegister
	}
	return l.reg.Read(ctx, vsd, epoch)
}

// RegisterPut records entries in vsd's register at epoch, durably.
func (l *LocalReplica) RegisterPut(ctx context.Context, vsd chunkstore.ID, epoch uint64, es []genreg.Entry) error {
	if l.reg == nil {
		return ErrNoRegister
	}
	return l.reg.Put(ctx, vsd, epoch, es)
}

// FenceFromRegister re-applies, on every store, the epoch the register
// holds for each VSD: a restarted node refuses an old owner's new chunks
// as it did before (the stores keep their allocation fence in memory).
func (l *LocalReplica) FenceFromRegister(ctx context.Context) error {
	if l.reg == nil {
		return nil
	}
	var errs []error
	for vsd, epoch := range l.reg.Epochs() {
		for _, s := range l.stores {
			if err := s.Fence(ctx, vsd, epoch); err != nil && !errors.Is(err, chunkstore.ErrStaleEpoch) {
				errs = append(errs, fmt.Errorf("re-fence VSD %s at epoch %d: %w", vsd, epoch, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (l *LocalReplica) handleRegister(ctx context.Context, r request, data []byte) ([]byte, error) {
	if r.op == opRegGet {
		es, err := l.RegisterGet(ctx, r.key.VSD, r.epoch)
		if err != nil {
			return nil, err
		}
		if len(es)*genreg.EntrySize > maxResponse {
			return nil, fmt.Errorf("register of %d entries exceeds a response", len(es))
		}
		out := make([]byte, 0, len(es)*genreg.EntrySize)
		for _, e := range es {
			out = genreg.AppendEntry(out, e)
		}
		return out, nil
	}
	es, err := genreg.DecodeEntries(data)
	if err != nil {
		return nil, fmt.Errorf("register put: %w", err)
	}
	return nil, l.RegisterPut(ctx, r.key.VSD, r.epoch, es)
}

// RegisterGet fences vsd's register on the node at epoch and returns its
// entries.
func (c *Client) RegisterGet(ctx context.Context, vsd chunkstore.ID, epoch uint64) ([]genreg.Entry, error) {
	body, err := c.call(ctx, request{op: opRegGet, key: chunkstore.ChunkKey{VSD: vsd}, epoch: epoch}, nil)
	if err != nil {
		return nil, err
	}
	es, err := genreg.DecodeEntries(body)
	if err != nil {
		return nil, fmt.Errorf("register entries: %w: %w", ErrProtocol, err)
	}
	return es, nil
}

// RegisterPut records entries in vsd's register on the node at epoch.
func (c *Client) RegisterPut(ctx context.Context, vsd chunkstore.ID, epoch uint64, es []genreg.Entry) error {
	if len(es) > MaxRegisterEntries {
		return fmt.Errorf("register %d entries, at most %d at once: %w", len(es), MaxRegisterEntries, chunkstore.ErrRange)
	}
	data := make([]byte, 0, len(es)*genreg.EntrySize)
	for _, e := range es {
		data = genreg.AppendEntry(data, e)
	}
	_, err := c.call(ctx, request{op: opRegPut, key: chunkstore.ChunkKey{VSD: vsd}, epoch: epoch, count: uint32(len(data))}, data)
	return err
}
