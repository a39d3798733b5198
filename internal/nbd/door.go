package nbd

import (
	"context"
	"fmt"
	"net"
	"time"
)

// Door is the server's admission policy for the option phase: which
// connections must start TLS, and who may list and open exports at all.
// The zero Door admits every client (Options.RequireTLS still applies).
// Per-export decisions stay with Exports.OpenExport (ErrNotPermitted).
type Door struct {
	// TLSRequired, when set, decides for each accepted connection whether
	// it must complete NBD_OPT_STARTTLS before any other option (all but
	// STARTTLS and ABORT get NBD_REP_ERR_TLS_REQD; NBD_OPT_EXPORT_NAME,
	// which has no error reply, closes the connection, as the spec says).
	// It overrides Options.RequireTLS: true on a TCP listener and false on
	// the unix socket, say.
	TLSRequired func(nc net.Conn) bool

	// TLSHint follows "TLS is required" in the message a client refused
	// for lack of TLS gets, and in the daemon's log: what to do about it.
	TLSHint string

	// Authorize, when set, is called before every option that lists or
	// opens exports (NBD_OPT_LIST, INFO, GO, EXPORT_NAME, LIST and
	// SET_META_CONTEXT) with the connection's context: PeerTLS says who
	// the client is. A non-nil error refuses the option with
	// NBD_REP_ERR_POLICY and the error's text, which should say what to do
	// (NBD_OPT_EXPORT_NAME closes the connection instead).
	Authorize func(ctx context.Context) error
}

// logRefusal logs, at most once per client address per refusalLogEvery,
// that a client was refused and what the admin must do.
func (c *conn) logRefusal(reason string, args ...any) {
	key := peerKey(c.nc.RemoteAddr())
	if key == "" {
		key = c.nc.RemoteAddr().Network()
	}
	ok, n := c.srv.refused.allow("door "+key, time.Now())
	if n > 0 {
		c.log.Warn("nbd clients refused at the door", "refused", n)
	}
	if ok {
		c.log.Warn("nbd client refused: "+reason, args...)
	}
}

// tlsRequired reports whether this connection must start TLS first.
func (c *conn) tlsRequired() bool {
	if f := c.srv.opts.Door.TLSRequired; f != nil {
		return f(c.nc)
	}
	return c.srv.opts.RequireTLS
}

// refuseWithoutTLS answers opt when the connection must start TLS and has
// not: refused reports that opt was answered (or the session ends, err).
func (c *conn) refuseWithoutTLS(st *optState, opt uint32) (refused bool, err error) {
	if st.tls || opt == optStartTLS || opt == optAbort || !c.tlsRequired() {
		return false, nil
	}
	hint := c.srv.opts.Door.TLSHint
	c.logRefusal("it did not start TLS on a port that requires it", "fix", hint)
	if opt == optExportName {
		// No error reply exists for NBD_OPT_EXPORT_NAME: close (spec).
		return true, fmt.Errorf("export name before TLS: %w", errEndSession)
	}
	msg := "TLS is required: use NBD_OPT_STARTTLS"
	if hint != "" {
		msg = "TLS is required on this port: " + hint
	}
	return true, c.optReply(opt, repErrTLSReqd, clipMessage(msg))
}

// refuseUnauthorized answers opt with NBD_REP_ERR_POLICY when it lists or
// opens exports and Door.Authorize refuses the client.
func (c *conn) refuseUnauthorized(opt uint32) (refused bool, err error) {
	switch opt {
	case optList, optInfo, optGo, optExportName, optListMetaContext, optSetMetaContext:
	default:
		return false, nil
	}
	f := c.srv.opts.Door.Authorize
	if f == nil {
		return false, nil
	}
	aerr := f(c.ctx)
	if aerr == nil {
		return false, nil
	}
	c.logRefusal(aerr.Error())
	if opt == optExportName {
		return true, fmt.Errorf("export name refused (%v): %w", aerr, errEndSession)
	}
	return true, c.optReply(opt, repErrPolicy, clipMessage(aerr.Error()))
}

// tlsHandshakeFailed logs a failed STARTTLS handshake (a certificate of
// another CA, a client that does not trust ours) and ends the session.
func (c *conn) tlsHandshakeFailed(err error) error {
	c.logRefusal("TLS handshake failed", "err", err,
		"fix", "a client certificate must be issued by this node (extrasphere client add), and the client must trust this node's ca-cert.pem")
	return fmt.Errorf("tls handshake: %w: %w", err, errEndSession)
}
