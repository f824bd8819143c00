package peer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/shoal-hci/shoal/peer/client"
	"github.com/shoal-hci/shoal/peer/internal/crdt"
	"github.com/shoal-hci/shoal/peer/internal/statestore"
)

// Bounds of the watch long-poll.
const (
	watchDefaultWait = 30 * time.Second
	watchMaxWait     = 5 * time.Minute
	watchMaxEvents   = 1000
)

// stateRoutes adds the state API (see peer/client/state.go) to the local mux.
func (p *Peer) stateRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/state/get", func(w http.ResponseWriter, r *http.Request) {
		st, ok := p.stateOrErr(w)
		if !ok {
			return
		}
		key := r.URL.Query().Get("key")
		if err := crdt.ValidKey(key); err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("key %q: %w", key, err))
			return
		}
		rec, err := st.Get(key)
		if errors.Is(err, statestore.ErrNotFound) {
			writeErr(w, http.StatusNotFound, fmt.Errorf("%s: no such record", key))
			return
		}
		if err != nil {
			writeErr(w, stateStatus(err), err)
			return
		}
		writeJSON(w, 200, stateRecord(key, rec))
	})
	mux.HandleFunc("GET /v1/state/list", func(w http.ResponseWriter, r *http.Request) {
		st, ok := p.stateOrErr(w)
		if !ok {
			return
		}
		es, rev, err := st.List(r.URL.Query().Get("prefix"))
		if err != nil {
			writeErr(w, stateStatus(err), err)
			return
		}
		out := client.StateList{Rev: rev, Records: []client.StateRecord{}}
		for _, e := range es {
			out.Records = append(out.Records, stateRecord(e.Key, e.Record))
		}
		writeJSON(w, 200, out)
	})
	mux.HandleFunc("POST /v1/state/put", func(w http.ResponseWriter, r *http.Request) {
		st, ok := p.stateOrErr(w)
		if !ok {
			return
		}
		var req client.StatePutRequest
		if !decode(w, r, &req) {
			return
		}
		if len(req.Fields) == 0 {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("put %q: no fields given", req.Key))
			return
		}
		fields := make(map[string][]byte, len(req.Fields))
		for k, v := range req.Fields {
			fields[k] = []byte(v)
		}
		ch, err := st.Put(req.Key, fields)
		if err != nil {
			writeErr(w, stateStatus(err), fmt.Errorf("put %q: %w", req.Key, err))
			return
		}
		writeJSON(w, 200, client.StateWrite{Origin: ch.Origin, Seq: ch.Seq})
	})
	mux.HandleFunc("POST /v1/state/delete", func(w http.ResponseWriter, r *http.Request) {
		st, ok := p.stateOrErr(w)
		if !ok {
			return
		}
		var req client.StateDeleteRequest
		if !decode(w, r, &req) {
			return
		}
		ch, err := st.Delete(req.Key)
		if err != nil {
			writeErr(w, stateStatus(err), fmt.Errorf("delete %q: %w", req.Key, err))
			return
		}
		writeJSON(w, 200, client.StateWrite{Origin: ch.Origin, Seq: ch.Seq})
	})
	mux.HandleFunc("GET /v1/state/digest", func(w http.ResponseWriter, r *http.Request) {
		st, ok := p.stateOrErr(w)
		if !ok {
			return
		}
		d, err := p.stateDigest(st)
		if err != nil {
			writeErr(w, stateStatus(err), err)
			return
		}
		writeJSON(w, 200, d)
	})
	mux.HandleFunc("GET /v1/state/watch", func(w http.ResponseWriter, r *http.Request) {
		st, ok := p.stateOrErr(w)
		if !ok {
			return
		}
		q := r.URL.Query()
		from, err := strconv.ParseUint(q.Get("from"), 10, 64)
		if q.Get("from") == "" {
			from, err = 0, nil
		}
		if err != nil {
			writeErr(w, http.StatusBadRequest, fmt.Errorf("from %q: not a revision", q.Get("from")))
			return
		}
		wait := watchDefaultWait
		if s := q.Get("wait"); s != "" {
			if wait, err = time.ParseDuration(s); err != nil || wait <= 0 {
				writeErr(w, http.StatusBadRequest, fmt.Errorf("wait %q: want a positive duration like 30s", s))
				return
			}
		}
		b, err := watchBatch(r.Context(), st, q.Get("prefix"), from, min(wait, watchMaxWait))
		if errors.Is(err, statestore.ErrResync) {
			writeErr(w, http.StatusGone, err)
			return
		}
		if err != nil {
			writeErr(w, stateStatus(err), err)
			return
		}
		writeJSON(w, 200, b)
	})
}

// watchBatch waits up to wait for the first event after from, then takes
// whatever else is ready (up to watchMaxEvents). The batch's Rev is where
// the next call resumes: the last event's revision, or beyond it when the
// watcher looked at later revisions that did not match.
func watchBatch(ctx context.Context, st *statestore.Store, prefix string, from uint64, wait time.Duration) (client.StateWatchBatch, error) {
	b := client.StateWatchBatch{Events: []client.StateEvent{}, Rev: from}
	wt := st.Watch(prefix, from)
	wctx, cancel := context.WithTimeout(ctx, wait)
	ev, err := wt.Next(wctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			b.Rev = wt.Rev() // nothing matched up to here
			return b, nil
		}
		return b, err
	}
	b.Events = append(b.Events, stateEvent(ev))
	done, stop := context.WithCancel(ctx)
	stop() // take only what is ready
	for len(b.Events) < watchMaxEvents {
		ev, err := wt.Next(done)
		if err != nil {
			break // nothing ready (or an error the next call reports)
		}
		b.Events = append(b.Events, stateEvent(ev))
	}
	b.Rev = b.Events[len(b.Events)-1].Rev
	return b, nil
}

func stateEvent(ev statestore.Event) client.StateEvent {
	e := client.StateEvent{Rev: ev.Rev, Key: ev.Key}
	if v := ev.Record.Visible(); v != nil {
		r := stateRecord(ev.Key, v)
		e.Record = &r
	}
	return e
}

// stateRecord is what readers see of rec, for the API.
func stateRecord(key string, rec *crdt.Record) client.StateRecord {
	out := client.StateRecord{Key: key, Fields: map[string]client.StateField{}}
	if rec == nil {
		return out
	}
	out.Schema = rec.Schema
	for name, f := range rec.Fields {
		switch f.Kind {
		case crdt.KindRegister:
			if v := rec.Value(name); v != nil {
				out.Fields[name] = client.StateField{Kind: client.KindRegister, Value: string(v)}
			}
		case crdt.KindSet:
			if m := rec.Members(name); len(m) > 0 {
				out.Fields[name] = client.StateField{Kind: client.KindSet, Elems: m}
			}
		case crdt.KindCounter:
			out.Fields[name] = client.StateField{Kind: client.KindCounter, Count: rec.Count(name)}
		}
	}
	return out
}

func (p *Peer) stateDigest(st *statestore.Store) (client.StateDigest, error) {
	// Read the vector, the digest and the count from one moment: retry if
	// a change landed in between (the revision moved); under a stream of
	// writes, settle for the last try.
	for try := 0; ; try++ {
		rev, err := st.Revision()
		if err != nil {
			return client.StateDigest{}, err
		}
		vv, err := st.VV()
		if err != nil {
			return client.StateDigest{}, err
		}
		d, err := st.Digest()
		if err != nil {
			return client.StateDigest{}, err
		}
		es, rev2, err := st.List("")
		if err != nil {
			return client.StateDigest{}, err
		}
		if rev2 != rev && try < 5 {
			continue
		}
		return client.StateDigest{Digest: hex.EncodeToString(d[:]), Rev: rev, Records: len(es), VV: map[string]uint64(vv)}, nil
	}
}

func (p *Peer) stateOrErr(w http.ResponseWriter) (*statestore.Store, bool) {
	st, err := p.stateStore()
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err)
		return nil, false
	}
	return st, true
}

func stateStatus(err error) int {
	switch {
	case errors.Is(err, crdt.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, statestore.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, statestore.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
