package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/extrasphere/extrasphere/internal/access"
	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/catalog"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/fence"
	"github.com/extrasphere/extrasphere/internal/flat"
	"github.com/extrasphere/extrasphere/internal/mirror"
	"github.com/extrasphere/extrasphere/internal/nbd"
	"github.com/extrasphere/extrasphere/internal/node"
)

// Mirror targets:
//
//	extrasphere://HOST:PORT/VOL   another daemon's node port (paired); the
//	                              replica volume is created there, data
//	                              flows over NBD with STARTTLS and our cert
//	nbd://HOST:PORT/EXPORT        any NBD server, plain TCP (another host
//	                              only with Insecure)
//	nbd+unix:///EXPORT?socket=P   any NBD server on a unix socket
//	file:///PATH                  a raw file (an NFS or iSCSI mount); made
//	                              sparse at the volume's size if missing

// PoolConns is how many NBD connections a mirror opens to a target that
// allows multi-conn.
const PoolConns = 2

type targetSpec struct {
	kind    string // "extrasphere", "nbd", "file"
	nbd     nbd.Target
	path    string
	host    string // extrasphere: the node's host and node port
	addr    string
	peerVol string
}

func parseTarget(s string, insecure bool) (targetSpec, error) {
	u, err := url.Parse(s)
	if err != nil || s == "" {
		return targetSpec{}, fmt.Errorf("target %q: want extrasphere://HOST:PORT/VOL, nbd://HOST:PORT/EXPORT, nbd+unix:///EXPORT?socket=PATH or file:///PATH", s)
	}
	switch u.Scheme {
	case "extrasphere":
		vol := strings.TrimPrefix(u.Path, "/")
		if u.Hostname() == "" || !datastore.ValidName(vol) {
			return targetSpec{}, fmt.Errorf("target %q: want extrasphere://HOST:PORT/VOLUME with a valid volume name", s)
		}
		port := u.Port()
		if port == "" {
			port = "10810"
		}
		return targetSpec{kind: "extrasphere", host: u.Hostname(), addr: net.JoinHostPort(u.Hostname(), port), peerVol: vol}, nil
	case "nbd", "nbd+unix":
		t, err := nbd.ParseURI(s)
		if err != nil {
			return targetSpec{}, err
		}
		if t.Network == "tcp" && !insecure && !loopbackAddr(t.Address) {
			return targetSpec{}, fmt.Errorf("target %q is plain TCP to another host: data would cross the network unencrypted and unauthenticated; mirror to extrasphere://HOST:PORT/VOL (TLS), or pass --insecure to allow it", s)
		}
		return targetSpec{kind: "nbd", nbd: t}, nil
	case "nbds", "nbds+unix":
		return targetSpec{}, fmt.Errorf("target %q: TLS to a foreign NBD server is not supported; mirror to another Extrasphere node with extrasphere://HOST:PORT/VOL (mutual TLS)", s)
	case "file":
		if u.Host != "" && u.Host != "localhost" || !strings.HasPrefix(u.Path, "/") {
			return targetSpec{}, fmt.Errorf("target %q: want file:///ABSOLUTE/PATH", s)
		}
		return targetSpec{kind: "file", path: u.Path}, nil
	}
	return targetSpec{}, fmt.Errorf("target %q: unknown scheme %q (want extrasphere, nbd, nbd+unix or file)", s, u.Scheme)
}

func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// prepareTarget checks the target once at create and fills the peer's
// fields of rec: a file is created if missing; another node creates the
// replica volume.
func (s *Service) prepareTarget(ctx context.Context, spec targetSpec, rec *catalog.Mirror, size int64) error {
	switch spec.kind {
	case "file":
		f, err := os.OpenFile(spec.path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return errorf(errkind.ErrInvalidArgument, "mirror %s: target file %s: %w", rec.Volume, spec.path, err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err == nil && fi.Size() < size {
			if fi.Size() != 0 {
				return errorf(errkind.ErrInvalidArgument, "mirror %s: target file %s is %d bytes, the volume %d", rec.Volume, spec.path, fi.Size(), size)
			}
			err = f.Truncate(size)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			return fmt.Errorf("mirror %s: target file %s: %w", rec.Volume, spec.path, err)
		}
		return nil
	case "nbd":
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := nbd.Dial(pctx, spec.nbd, nbd.ClientOptions{})
		if err != nil {
			return errorf(errkind.ErrPeer, "mirror %s: target %s: %w", rec.Volume, rec.Target, err)
		}
		defer c.Close()
		if c.Size() < size || c.Caps().ReadOnly {
			return errorf(errkind.ErrInvalidArgument, "mirror %s: target %s is %d bytes (read-only %v), the volume %d bytes: it must be writable and at least as large",
				rec.Volume, rec.Target, c.Size(), c.Caps().ReadOnly, size)
		}
		return nil
	}
	p, err := s.pairedPeer(spec.addr)
	if err != nil {
		return errorf(errkind.ErrPeer, "mirror %s: %w", rec.Volume, err)
	}
	var resp replicaResponse
	req := replicaRequest{Volume: spec.peerVol, Size: size, SourceVolume: rec.Volume, Gen: rec.Gen}
	if err := s.node.PeerClient(p.Addr, p.Fingerprint).Do(ctx, "POST", apischema.PeerReplicas, req, &resp); err != nil {
		return peerError(rec.Volume, p, err)
	}
	rec.PeerFingerprint, rec.PeerAddr, rec.PeerVolume = p.Fingerprint, spec.addr, spec.peerVol
	rec.PeerNBDAddr = net.JoinHostPort(spec.host, resp.NBDPort)
	return nil
}

// pairedPeer finds the paired node at addr (HOST:PORT as paired).
func (s *Service) pairedPeer(addr string) (node.Peer, error) {
	ns := s.node
	if ns == nil {
		return node.Peer{}, errors.New("this daemon runs without a node identity; start it with --node and run `extrasphere node init`")
	}
	for _, p := range ns.Peers().List() {
		if p.Addr == addr {
			return p, nil
		}
	}
	return node.Peer{}, fmt.Errorf("no paired node at %s: pair first with `extrasphere node pair %s --code CODE` (the code is printed by `extrasphere node show` there)", addr, addr)
}

func peerError(vol string, p node.Peer, err error) error {
	var re *node.RemoteError
	if errors.As(err, &re) {
		switch re.Code {
		case apischema.CodeSplitBrain:
			return errorf(errkind.ErrSplitBrain, "volume %s: node %s refused: %s", vol, p.Name, re.Msg)
		case apischema.CodeVolumeInUse, apischema.CodeVolumeExists, apischema.CodeMirrorExists:
			return errorf(errkind.ErrVolumeInUse, "volume %s: node %s refused: %s", vol, p.Name, re.Msg)
		}
		return errorf(errkind.ErrPeer, "volume %s: node %s refused: %s", vol, p.Name, re.Msg)
	}
	return errorf(errkind.ErrPeer, "volume %s: node %s at %s: %w", vol, p.Name, p.Addr, err)
}

// dialer opens connections to rec's target.
func (s *Service) dialer(rec catalog.Mirror, size int64) (mirror.Dialer, error) {
	spec, err := parseTarget(rec.Target, rec.Insecure)
	if err != nil {
		return nil, errorf(errkind.ErrInvalidArgument, "mirror %s: %w", rec.Volume, err)
	}
	switch spec.kind {
	case "file":
		// The writes to a file target run in this process: a write of a
		// dropped connection still in pwrite (a hung NFS server) could
		// land after the resync rewrote its region. Each open is a new
		// session of a fence, which waits for the old session's writes
		// and refuses the ones it had not started.
		f := fence.New(fileFenceTimeout)
		var epoch atomic.Uint64
		return func(ctx context.Context) (blockdev.Device, error) {
			h, err := f.Open(ctx, epoch.Add(1))
			if err != nil {
				return nil, fmt.Errorf("target file %s: %w", spec.path, err)
			}
			d, err := flat.OpenRaw(spec.path, size)
			if err != nil {
				h.Close()
				if errors.Is(err, flat.ErrShortFlat) {
					err = fmt.Errorf("%w: %w", err, mirror.ErrRefused)
				}
				return nil, err
			}
			return fence.NewDevice(d, h, true), nil
		}, nil
	case "nbd":
		return func(ctx context.Context) (blockdev.Device, error) {
			return nbd.DialPool(ctx, spec.nbd, nbd.ClientOptions{}, PoolConns)
		}, nil
	}
	return func(ctx context.Context) (blockdev.Device, error) {
		ns := s.node
		if ns == nil {
			return nil, fmt.Errorf("no node identity: %w", mirror.ErrRefused)
		}
		cfg, err := ns.ClientTLS(rec.PeerFingerprint)
		if err != nil {
			return nil, err
		}
		cfg.NextProtos = []string{access.ReplicaALPN} // the node certificate, not the client CA's (clients.go)
		// Every session has a new epoch: the replica fences the older
		// ones before it acknowledges this one's NBD_OPT_GO.
		epoch, err := s.cat.NextStreamEpoch(uint64(time.Now().UnixNano()))
		if err != nil {
			return nil, fmt.Errorf("mirror %s: %w", rec.Volume, err)
		}
		t := nbd.Target{Network: "tcp", Address: rec.PeerNBDAddr, Export: StreamExport(rec.PeerVolume, rec.Gen, epoch), TLS: true}
		p, err := nbd.DialPool(ctx, t, nbd.ClientOptions{TLS: cfg}, PoolConns)
		// The replica refuses for good with NBD_REP_ERR_POLICY
		// (refuseStream): the mirror stops. Any other refusal is retried.
		var re *nbd.ReplyError
		if errors.As(err, &re) && errors.Is(re, nbd.ErrNotPermitted) {
			return nil, fmt.Errorf("%s: %w", re.Msg, mirror.ErrRefused)
		}
		return p, err
	}, nil
}

// StreamExport is the NBD export name of a replica stream:
// VOL@GEN@EPOCH, EPOCH in decimal (docs/API.md, "Replica streams"). A
// volume name and a generation cannot contain '@', so it never names a
// volume and parses one way.
func StreamExport(vol, gen string, epoch uint64) string {
	return vol + "@" + gen + "@" + strconv.FormatUint(epoch, 10)
}

// parseReplicaExport splits a stream name made by StreamExport.
func parseReplicaExport(name string) (vol, gen string, epoch uint64, err error) {
	vol, rest, _ := strings.Cut(name, "@")
	gen, es, ok := strings.Cut(rest, "@")
	if !ok {
		return vol, gen, 0, fmt.Errorf("no stream epoch (want VOLUME@GENERATION@EPOCH): %w", errkind.ErrStreamEpoch)
	}
	epoch, err = strconv.ParseUint(es, 10, 64)
	if err != nil || epoch == 0 {
		return vol, gen, 0, fmt.Errorf("stream epoch %q is not a positive decimal number: %w", es, errkind.ErrStreamEpoch)
	}
	return vol, gen, epoch, nil
}

// fileFenceTimeout bounds how long a reconnect to a file target waits for
// the writes of the dropped connection to leave pwrite. A write stuck
// longer (a hung NFS mount) keeps the mirror degraded and retrying: it is
// never cut short, and nothing is copied while it may still land.
const fileFenceTimeout = 5 * time.Second
