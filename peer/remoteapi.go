package peer

import "net/http"

// remoteRoutes serves the local API's read-only views to other members
// over mutual TLS, so that `shoal status --addr` and `shoal node ls
// --addr` on any member show what this node sees. The answers are the
// local API's own (same handlers, same JSON); only members of this
// cluster whose certificate is not revoked are served (memberOnly).
func (p *Peer) remoteRoutes(mux *http.ServeMux) {
	local := p.localHandler()
	for _, route := range []string{"GET /v1/status", "GET /v1/nodes", "GET /v1/events"} {
		mux.HandleFunc(route, p.memberOnly(local.ServeHTTP))
	}
}
