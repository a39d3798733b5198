package apischema

// The node routes (/v1/node...).

import "time"

// PairingCodeInfo is the body of POST /v1/node/code: a code that pairs
// one node, until Expires.
type PairingCodeInfo struct {
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`
}

// NodeInitRequest is the body of POST /v1/node/init.
type NodeInitRequest struct {
	Name string `json:"name"`
}

// NodePairRequest is the body of POST /v1/node/pair.
type NodePairRequest struct {
	Addr string `json:"addr"` // the other node's node port, HOST:PORT
	Code string `json:"code"` // its pairing code (`extrasphere node show` there)
}
