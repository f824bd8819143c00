package appliance

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/shoal-hci/shoal/appliance/internal/verb"
	"github.com/shoal-hci/shoal/peer/client"
)

// fakeState serves the state part of the local API from a map.
type fakeState struct {
	mu      sync.Mutex
	recs    map[string]map[string]string
	members []client.Member // GET /v1/nodes
}

func (f *fakeState) record(key string) (client.StateRecord, bool) {
	fields, ok := f.recs[key]
	if !ok {
		return client.StateRecord{}, false
	}
	r := client.StateRecord{Key: key, Fields: map[string]client.StateField{}}
	for k, v := range fields {
		r.Fields[k] = client.StateField{Kind: client.KindRegister, Value: v}
	}
	return r, true
}

func (f *fakeState) serve(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/state/get", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		rec, ok := f.record(r.URL.Query().Get("key"))
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(client.Error{Msg: "no such record"})
			return
		}
		json.NewEncoder(w).Encode(rec)
	})
	mux.HandleFunc("GET /v1/state/list", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		l := client.StateList{Rev: 1, Records: []client.StateRecord{}}
		var keys []string
		for k := range f.recs {
			if strings.HasPrefix(k, r.URL.Query().Get("prefix")) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			rec, _ := f.record(k)
			l.Records = append(l.Records, rec)
		}
		json.NewEncoder(w).Encode(l)
	})
	mux.HandleFunc("POST /v1/state/put", func(w http.ResponseWriter, r *http.Request) {
		var req client.StatePutRequest
		json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.recs[req.Key] == nil {
			f.recs[req.Key] = map[string]string{}
		}
		for k, v := range req.Fields {
			f.recs[req.Key][k] = v
		}
		json.NewEncoder(w).Encode(client.StateWrite{Origin: "n1", Seq: 1})
	})
	mux.HandleFunc("POST /v1/state/delete", func(w http.ResponseWriter, r *http.Request) {
		var req client.StateDeleteRequest
		json.NewDecoder(r.Body).Decode(&req)
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.recs[req.Key]; !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(client.Error{Msg: "no such record"})
			return
		}
		delete(f.recs, req.Key)
		json.NewEncoder(w).Encode(client.StateWrite{Origin: "n1", Seq: 2})
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(f.members)
	})
	mux.HandleFunc("GET /v1/claim", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(client.ClaimView{Resource: r.URL.Query().Get("resource"), Epoch: 3, Holder: "n2", State: client.ClaimHeld, Confirmed: true})
	})
	return serveUnix(t, mux)
}

func TestVSDVerbs(t *testing.T) {
	f := &fakeState{recs: map[string]map[string]string{
		"vsd-status/busy": {"owner": "n2", "epoch": "3", "allocated": "1048576", "degraded": "2", "updated": "2026-01-01T00:00:00Z"},
		"vsd/img":         {"id": "0123456789abcdef0123456789abcdef", "size": "1048576", "replicas": "2", "readonly": "1"},
	}}
	sock := f.serve(t)
	verbs := []verb.Verb{
		{Name: "vsd create", Summary: "s", Run: VSDCreate},
		{Name: "vsd ls", Summary: "s", Run: VSDLs},
		{Name: "vsd info", Summary: "s", Run: VSDInfoVerb},
		{Name: "vsd resize", Summary: "s", Run: VSDResize},
		{Name: "vsd rm", Summary: "s", Run: VSDRm},
	}
	dispatchTable(t, verbs, sock, []verbCase{
		{[]string{"vsd", "create", "v1", "--size", "4G"}, 0, "created VSD v1: 4G, 2 replicas"},
		{[]string{"vsd", "create", "v1", "--size", "4G"}, verb.ExitError, "exists already"},
		{[]string{"vsd", "create", "v2", "--size", "4X"}, verb.ExitUsage, `"4X": want a number`},
		{[]string{"vsd", "create", "v2", "--size", "100"}, verb.ExitUsage, "not a multiple of 4096"},
		{[]string{"vsd", "create", "v2", "--size", "1G", "--replicas", "4"}, verb.ExitUsage, "want 2 or 3"},
		{[]string{"vsd", "create", "v2"}, verb.ExitUsage, "needs --size"},
		{[]string{"vsd", "create", "Bad/Name", "--size", "1G"}, verb.ExitUsage, "bad VSD name"},
		{[]string{"vsd", "create", "busy", "--size", "512M", "--replicas", "3"}, 0, "512M, 3 replicas"},
		{[]string{"vsd", "ls"}, 0, "busy  512M  3         1M         2         n2"},
		{[]string{"vsd", "ls", "--json"}, 0, `"name": "v1"`},
		{[]string{"vsd", "info", "busy"}, 0, "degraded extents: 2 (extents with fewer replicas"},
		{[]string{"vsd", "info", "busy"}, 0, "claim:            epoch 3, holder n2 (held)"},
		{[]string{"vsd", "info", "v1", "--json"}, 0, `"size": 4294967296`},
		{[]string{"vsd", "info", "nope"}, verb.ExitError, `no VSD named "nope"`},
		{[]string{"vsd", "info", "img"}, 0, "access:           read-only"},
		{[]string{"vsd", "info", "img", "--json"}, 0, `"read_only": true`},
		{[]string{"vsd", "info", "busy"}, 0, "access:           read-write"},
		{[]string{"vsd", "rm", "img"}, 0, "removed VSD img"},
		{[]string{"vsd", "resize", "v1", "--size", "2G"}, verb.ExitError, "shrinking to 2G would cut off its data, refused"},
		{[]string{"vsd", "resize", "v1", "--size", "8G"}, 0, "VSD v1: 4G → 8G"},
		{[]string{"vsd", "info", "v1"}, 0, "8G (8589934592 bytes)"},
		{[]string{"vsd", "rm", "busy"}, verb.ExitError, "in use: open on node n2"},
		{[]string{"vsd", "rm", "busy", "--force"}, 0, "removed VSD busy"},
		{[]string{"vsd", "rm", "v1"}, 0, "removed VSD v1"},
		{[]string{"vsd", "ls"}, 0, "NAME  SIZE  REPLICAS"},
	})
	f.mu.Lock()
	defer f.mu.Unlock()
	var left []string
	for k := range f.recs {
		if !strings.HasPrefix(k, "vsd-deleted/") {
			left = append(left, k)
		}
	}
	if len(left) != 0 || len(f.recs) != 3 {
		t.Errorf("records after rm: %v; want only the three vsd-deleted/ records", f.recs)
	}
}
