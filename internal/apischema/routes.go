package apischema

// Routes of the peer API (HTTPS between paired nodes, mutual TLS). Server
// patterns are METHOD + " " + route; clients send the route as the path.
const (
	// PeerPrefix is the path prefix of every peer route: a node's peer
	// port serves nothing else.
	PeerPrefix = "/peer/"

	// PeerPair: POST, a node.PairRequest -> 200 node.Hello. Any client
	// certificate; a pending pairing code's secret authorises it, once.
	PeerPair = "/peer/v1/pair"

	// PeerHello: GET -> 200 node.Hello. Paired nodes only.
	PeerHello = "/peer/v1/hello"

	// PeerReplicas: POST, a ReplicaRequest -> 200 ReplicaResponse: the
	// source of a mirror asks for a replica volume. Paired nodes only.
	PeerReplicas = "/peer/v1/replicas"

	// PeerFailback: POST, a FailbackRequest -> 200 FailbackResponse: the
	// failed-over replica asks its old source to become its replica.
	// Paired nodes only.
	PeerFailback = "/peer/v1/failback"
)
