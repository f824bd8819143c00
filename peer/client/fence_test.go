package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/shoal-hci/shoal/peer/client"
)

// fenceScript answers Fence and WaitFence from a list, one entry per call;
// a nil status stands for an error.
type fenceScript struct {
	steps  []*client.FenceStatus
	cancel context.CancelFunc
}

func (f *fenceScript) next() (client.FenceStatus, error) {
	if len(f.steps) == 0 {
		f.cancel()
		return client.FenceStatus{}, errors.New("script over")
	}
	s := f.steps[0]
	f.steps = f.steps[1:]
	if s == nil {
		return client.FenceStatus{}, errors.New("daemon restarting")
	}
	return *s, nil
}

func (f *fenceScript) Fence(context.Context) (client.FenceStatus, error) { return f.next() }
func (f *fenceScript) WaitFence(context.Context, client.FenceStatus) (client.FenceStatus, error) {
	return f.next()
}

func TestWatchFenceReportsChangesOnly(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	free := &client.FenceStatus{Since: t0}
	fenced := &client.FenceStatus{Fenced: true, Since: t0.Add(time.Second)}
	freeAgain := &client.FenceStatus{Since: t0.Add(2 * time.Second)}
	ctx, cancel := context.WithCancel(t.Context())
	src := &fenceScript{cancel: cancel, steps: []*client.FenceStatus{
		free, free, // long-poll window passed, nothing changed
		fenced,
		nil,    // daemon restarting: read again after the retry
		fenced, // same as before the error: not reported again
		freeAgain,
	}}
	var got []client.FenceStatus
	client.WatchFence(ctx, src, time.Millisecond, func(st client.FenceStatus) { got = append(got, st) })
	want := []client.FenceStatus{*free, *fenced, *freeAgain}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reported (-want +got):\n%s", diff)
	}
}
