package nbd

import (
	"encoding/binary"
	"errors"
	"strings"
)

// Option payload decoding errors; each becomes an option error reply.
var (
	errOptInvalid = errors.New("malformed option payload")
	errOptTooBig  = errors.New("string in option payload too long")
)

// optRepFor maps a decoding error to an option reply type.
func optRepFor(err error) uint32 {
	if errors.Is(err, errOptTooBig) {
		return repErrTooBig
	}
	return repErrInvalid
}

// infoRequest is the payload of NBD_OPT_INFO and NBD_OPT_GO.
type infoRequest struct {
	name  string
	infos []uint16
}

// parseInfoRequest decodes: u32 name length, name, u16 count, count × u16.
func parseInfoRequest(b []byte) (infoRequest, error) {
	name, rest, err := takeString(b)
	if err != nil {
		return infoRequest{}, err
	}
	if len(rest) < 2 {
		return infoRequest{}, errOptInvalid
	}
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*n {
		return infoRequest{}, errOptInvalid
	}
	r := infoRequest{name: name, infos: make([]uint16, n)}
	for i := range n {
		r.infos[i] = binary.BigEndian.Uint16(rest[2*i:])
	}
	return r, nil
}

// metaRequest is the payload of NBD_OPT_LIST/SET_META_CONTEXT.
type metaRequest struct {
	export  string
	queries []string
}

// parseMetaRequest decodes: u32 export name length, name, u32 count, then
// count × (u32 length, query).
func parseMetaRequest(b []byte) (metaRequest, error) {
	name, rest, err := takeString(b)
	if err != nil {
		return metaRequest{}, err
	}
	if len(rest) < 4 {
		return metaRequest{}, errOptInvalid
	}
	n := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	// Every query takes at least 4 bytes: a count that cannot fit is a lie.
	if uint64(n)*4 > uint64(len(rest)) {
		return metaRequest{}, errOptInvalid
	}
	r := metaRequest{export: name, queries: make([]string, 0, n)}
	for range n {
		var q string
		q, rest, err = takeString(rest)
		if err != nil {
			return metaRequest{}, err
		}
		r.queries = append(r.queries, q)
	}
	if len(rest) != 0 {
		return metaRequest{}, errOptInvalid
	}
	return r, nil
}

// takeString reads a u32-length-prefixed string.
func takeString(b []byte) (string, []byte, error) {
	if len(b) < 4 {
		return "", nil, errOptInvalid
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return "", nil, errOptInvalid
	}
	if n > maxStringLen {
		return "", nil, errOptTooBig
	}
	return string(b[:n]), b[n:], nil
}

// matchMeta returns the contexts of avail that a query selects. For LIST a
// bare namespace ("base:") or an empty query list selects everything in it;
// SET selects exact names only.
func matchMeta(avail []string, queries []string, list bool) []string {
	if list && len(queries) == 0 {
		return append([]string(nil), avail...)
	}
	var out []string
	seen := map[string]bool{}
	for _, q := range queries {
		for _, a := range avail {
			hit := a == q || (list && strings.HasSuffix(q, ":") && strings.HasPrefix(a, q))
			if hit && !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	return out
}
