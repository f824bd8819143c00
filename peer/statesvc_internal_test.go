package peer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/hlc"
	"github.com/shoal-hci/shoal/peer/internal/replicate"
	"github.com/shoal-hci/shoal/peer/internal/statestore"
)

// fakeMesh points every member at one test server.
type fakeMesh struct{ url string }

func (m fakeMesh) Self() string                    { return "self" }
func (m fakeMesh) Members() []client.Member        { return nil }
func (m fakeMesh) HTTPClient() *http.Client        { return http.DefaultClient }
func (m fakeMesh) URL(_, p string) (string, error) { return m.url + p, nil }

func TestReplicationStatusRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		err  error // returned by the receiving side
		want error // matched by the sending side's error
	}{
		{"must resync", fmt.Errorf("push from n2: %w", replicate.ErrMustResync), replicate.ErrMustResync},
		{"clock offset", fmt.Errorf("apply: %w", hlc.ErrClockOffset), hlc.ErrClockOffset},
		{"bad message", fmt.Errorf("decode: %w", replicate.ErrBadMessage), nil},
		{"closed", statestore.ErrClosed, nil},
		{"other", errors.New("disk on fire"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeErr(w, replicationStatus(tt.err), tt.err)
			}))
			defer srv.Close()
			tr := &stateTransport{mesh: fakeMesh{srv.URL}, log: slog.New(slog.DiscardHandler), now: time.Now}
			tr.hc.Store(srv.Client())
			err := tr.Push(context.Background(), "n2", &replicate.PushMsg{From: "self", Origin: "self#1"})
			if err == nil {
				t.Fatal("push succeeded, want an error")
			}
			for _, s := range []error{replicate.ErrMustResync, hlc.ErrClockOffset} {
				if got := errors.Is(err, s); got != (s == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v, want %v", err, s, got, s == tt.want)
				}
			}
		})
	}
}

func TestReplicationPullOK(t *testing.T) {
	want := &replicate.PullResponse{From: "n2", Origin: "n2#1", Same: true}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/svc/state/pull" {
			http.NotFound(w, r)
			return
		}
		w.Write(want.Marshal())
	}))
	defer srv.Close()
	tr := &stateTransport{mesh: fakeMesh{srv.URL}, log: slog.New(slog.DiscardHandler), now: time.Now}
	tr.hc.Store(srv.Client())
	got, err := tr.Pull(context.Background(), "n2", &replicate.PullRequest{From: "self", Origin: "self#1"})
	if err != nil {
		t.Fatal(err)
	}
	if got.From != want.From || got.Origin != want.Origin || !got.Same {
		t.Errorf("pull = %+v, want %+v", got, want)
	}
}
