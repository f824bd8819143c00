package peer

import (
	"context"
	"net/http"

	"github.com/shoal-hci/shoal/peer/client"
)

// Service runs over the mutual-TLS node channel once this node is a
// member: the seam for state replication (issue 5) and claims (issue 6).
// Requests to https://<node api>/v1/svc/<Name>/... on any member reach that
// member's Service; PeerNodeID(r) says which member called.
type Service interface {
	Name() string
	http.Handler
	// Run runs until ctx ends (then returns nil). mesh reaches the members.
	Run(ctx context.Context, mesh Mesh) error
}

// Mesh is what a Service sees of the cluster.
type Mesh interface {
	// Self is this node's ID.
	Self() string
	// Members is the current membership (alive and otherwise).
	Members() []client.Member
	// HTTPClient makes mutual-TLS requests to members; build URLs with URL.
	HTTPClient() *http.Client
	// URL is the https URL of path (starting with /) on member id.
	URL(id, path string) (string, error)
}

type peerIDKey struct{}

// PeerNodeID returns the node ID of the member that made a request to a
// Service, verified against the cluster CA.
func PeerNodeID(r *http.Request) string {
	id, _ := r.Context().Value(peerIDKey{}).(string)
	return id
}
