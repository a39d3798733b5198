package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"unicode/utf8"
)

// peerTLSKey is the context key under which a connection that completed
// NBD_OPT_STARTTLS keeps its TLS state.
type peerTLSKey struct{}

// withPeerTLS returns ctx carrying cs. The result is a child of ctx, so it
// is cancelled exactly when ctx is.
func withPeerTLS(ctx context.Context, cs tls.ConnectionState) context.Context {
	return context.WithValue(ctx, peerTLSKey{}, &cs)
}

// PeerTLS returns the TLS state of the client connection on whose behalf
// the server calls Exports (OpenExport, ListExports) and the export's
// device. ok is false when the connection did not negotiate TLS
// (NBD_OPT_STARTTLS), so an implementation can refuse exports to clients
// it cannot identify. With a server tls.Config that asks for client
// certificates, PeerCertificates[0] is the client's certificate (verified
// against ClientCAs only if the config says so: pin it yourself otherwise).
// The state must not be modified.
func PeerTLS(ctx context.Context) (*tls.ConnectionState, bool) {
	cs, ok := ctx.Value(peerTLSKey{}).(*tls.ConnectionState)
	return cs, ok && cs != nil
}

// openRefusal is the option error reply for an OpenExport failure: an
// unknown name is NBD_REP_ERR_UNKNOWN, a client not allowed to open it
// NBD_REP_ERR_POLICY, anything else NBD_REP_ERR_PLATFORM. Either way the
// message is the error's text (the engine's reason, such as a failed-over
// volume), cut to the protocol's 4096-byte string limit.
func openRefusal(err error) (uint32, []byte) {
	code := repErrPlatform
	switch {
	case errors.Is(err, ErrNotPermitted):
		code = repErrPolicy
	case errors.Is(err, ErrUnknownExport):
		code = repErrUnknown
	}
	return code, clipMessage(err.Error())
}

// clipMessage cuts msg to the protocol's 4096-byte string limit on a UTF-8
// boundary.
func clipMessage(msg string) []byte {
	if len(msg) > maxStringLen {
		cut := maxStringLen
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut]
	}
	return []byte(msg)
}
