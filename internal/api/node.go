package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/node"
)

// Node identity and pairing routes:
//
//	GET    /v1/node                 -> 200 NodeInfo (no pairing code)
//	POST   /v1/node/code            -> 201 apischema.PairingCodeInfo (a fresh single-use code)
//	POST   /v1/node/init            {"name": N} -> 201 NodeInfo
//	POST   /v1/node/pair            {"addr": "HOST:PORT", "code": CODE} -> 200 node.Peer
//	GET    /v1/node/peers           -> 200 []node.Peer
//	DELETE /v1/node/peers/{name}    -> 204 (name or fingerprint)

// errNoNodeService: the daemon was started without a node service.
var errNoNodeService = errors.New("this daemon has no node identity service")

// nodeErrorMap maps node errors to statuses and codes, checked in order
// before errorMap.
var nodeErrorMap = []struct {
	err    error
	status int
	code   string
}{
	{errNoNodeService, http.StatusNotImplemented, apischema.CodeNodeDisabled},
	{node.ErrExists, http.StatusConflict, apischema.CodeNodeExists},
	{node.ErrNoIdentity, http.StatusConflict, apischema.CodeNodeNoIdentity},
	{node.ErrNotPaired, http.StatusNotFound, apischema.CodeNodeNotPaired},
	{node.ErrBadCode, http.StatusBadRequest, apischema.CodeNodeBadCode},
	{node.ErrRateLimited, http.StatusTooManyRequests, apischema.CodeNodeRateLimited},
	{node.ErrFingerprintMismatch, http.StatusBadGateway, apischema.CodeNodeFingerprintMismatch},
	{node.ErrPeerConflict, http.StatusConflict, apischema.CodeNodePeerConflict},
	{node.ErrInvalidName, http.StatusBadRequest, apischema.CodeInvalidArgument},
	{node.ErrUnreachable, http.StatusBadGateway, apischema.CodeNodeUnreachable},
}

// NodeInfo is this node's identity and peers.
type NodeInfo struct {
	Name        string      `json:"name"`
	Fingerprint string      `json:"fingerprint"`
	PairingCode string      `json:"pairing_code,omitempty"`         // set by POST /v1/node/init and by `node show`
	CodeExpires *time.Time  `json:"pairing_code_expires,omitempty"` // when PairingCode stops working
	Addr        string      `json:"addr,omitempty"`                 // the node port other nodes reach, "" if not known
	Peers       []node.Peer `json:"peers"`
}

// nodeService returns the engine's node service or errNoNodeService.
func (s *server) nodeService() (*node.Service, error) {
	if n := s.node; n != nil {
		return n, nil
	}
	return nil, errNoNodeService
}

// writeNodeError writes a node error, or falls back to writeError.
func (s *server) writeNodeError(w http.ResponseWriter, r *http.Request, err error) {
	var re *node.RemoteError
	for _, m := range nodeErrorMap {
		if errors.Is(err, m.err) {
			writeJSON(w, m.status, apischema.ErrorBody{Error: errorMessage(r, m.status, err), Code: m.code})
			return
		}
	}
	if errors.As(err, &re) {
		writeJSON(w, http.StatusBadGateway, apischema.ErrorBody{Error: errorMessage(r, http.StatusBadGateway, err), Code: apischema.CodeNodeRemoteError})
		return
	}
	s.writeError(w, r, err)
}

func nodeInfo(n *node.Service) (NodeInfo, error) {
	id, err := n.Identity()
	if err != nil {
		return NodeInfo{}, err
	}
	return NodeInfo{Name: id.Name, Fingerprint: id.Fingerprint, Addr: n.AdvertiseAddr(), Peers: peersOrEmpty(n)}, nil
}

func peersOrEmpty(n *node.Service) []node.Peer {
	if ps := n.Peers().List(); ps != nil {
		return ps
	}
	return []node.Peer{}
}

func (s *server) getNode(w http.ResponseWriter, r *http.Request) {
	n, err := s.nodeService()
	if err == nil {
		var in NodeInfo
		if in, err = nodeInfo(n); err == nil {
			writeJSON(w, http.StatusOK, in)
			return
		}
	}
	s.writeNodeError(w, r, err)
}

func (s *server) initNode(w http.ResponseWriter, r *http.Request) {
	var req apischema.NodeInitRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	n, err := s.nodeService()
	if err == nil {
		_, err = n.Init(req.Name)
	}
	var in NodeInfo
	if err == nil {
		in, err = nodeInfo(n)
	}
	var pc node.PairingCode
	if err == nil {
		pc, err = n.NewPairingCode()
	}
	if err != nil {
		s.writeNodeError(w, r, err)
		return
	}
	in.PairingCode, in.CodeExpires = pc.Code, &pc.Expires
	writeJSON(w, http.StatusCreated, in)
}

func (s *server) newPairingCode(w http.ResponseWriter, r *http.Request) {
	n, err := s.nodeService()
	var pc node.PairingCode
	if err == nil {
		pc, err = n.NewPairingCode()
	}
	if err != nil {
		s.writeNodeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, apischema.PairingCodeInfo{Code: pc.Code, Expires: pc.Expires})
}

func (s *server) pairNode(w http.ResponseWriter, r *http.Request) {
	var req apischema.NodePairRequest
	if err := decode(r, w, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	n, err := s.nodeService()
	var p node.Peer
	if err == nil {
		p, err = n.Pair(r.Context(), req.Addr, req.Code)
	}
	if err != nil {
		s.writeNodeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *server) listNodePeers(w http.ResponseWriter, r *http.Request) {
	n, err := s.nodeService()
	if err != nil {
		s.writeNodeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, peersOrEmpty(n))
}

func (s *server) unpairNode(w http.ResponseWriter, r *http.Request) {
	n, err := s.nodeService()
	if err == nil {
		_, err = n.Unpair(r.PathValue("name"))
	}
	if err != nil {
		s.writeNodeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Node returns GET /v1/node.
func (c *Client) Node(ctx context.Context) (NodeInfo, error) {
	var out NodeInfo
	err := c.do(ctx, http.MethodGet, "/v1/node", nil, &out)
	return out, err
}

// NewPairingCode calls POST /v1/node/code: a fresh code that pairs one
// node within node.CodeTTL.
func (c *Client) NewPairingCode(ctx context.Context) (apischema.PairingCodeInfo, error) {
	var out apischema.PairingCodeInfo
	err := c.do(ctx, http.MethodPost, "/v1/node/code", nil, &out)
	return out, err
}

// InitNode calls POST /v1/node/init.
func (c *Client) InitNode(ctx context.Context, name string) (NodeInfo, error) {
	var out NodeInfo
	err := c.do(ctx, http.MethodPost, "/v1/node/init", apischema.NodeInitRequest{Name: name}, &out)
	return out, err
}

// PairNode calls POST /v1/node/pair: the daemon pairs with the node at
// addr.
func (c *Client) PairNode(ctx context.Context, addr, code string) (node.Peer, error) {
	var out node.Peer
	err := c.do(ctx, http.MethodPost, "/v1/node/pair", apischema.NodePairRequest{Addr: addr, Code: code}, &out)
	return out, err
}

// NodePeers returns GET /v1/node/peers.
func (c *Client) NodePeers(ctx context.Context) ([]node.Peer, error) {
	var out []node.Peer
	err := c.do(ctx, http.MethodGet, "/v1/node/peers", nil, &out)
	return out, err
}

// UnpairNode calls DELETE /v1/node/peers/{name}.
func (c *Client) UnpairNode(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/node/peers/"+url.PathEscape(name), nil, nil)
}
