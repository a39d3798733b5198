package nbd

import (
	"fmt"
	"io"
)

// readOptionData reads the n bytes of data of option opt into a buffer of
// their own, after checking n against optionDataLimit: nothing is
// allocated for more than an option can need. Data over the limit is
// skipped unread when it is at most maxOptionSkip (skipped is true and the
// option gets an error reply) and ends the session otherwise, as it does
// for NBD_OPT_EXPORT_NAME, which has no error reply.
func (c *conn) readOptionData(opt, n uint32) (data []byte, skipped bool, err error) {
	if n <= optionDataLimit(opt) {
		c.optBytes += int64(n)
		c.optBiggest = max(c.optBiggest, int64(n))
		data = make([]byte, n)
		if _, err := io.ReadFull(c.br, data); err != nil {
			return nil, false, err
		}
		return data, false, nil
	}
	if opt == optExportName || n > maxOptionSkip {
		return nil, false, fmt.Errorf("option %d with %d bytes of data: %w", opt, n, errEndSession)
	}
	if _, err := c.br.Discard(int(n)); err != nil {
		return nil, false, err
	}
	return nil, true, nil
}

// oversizeReply is the error reply to an option whose data was skipped for
// being over its limit, when the option's own handling would not give the
// right one: options that take no data say so themselves
// (NBD_REP_ERR_INVALID), NBD_OPT_ABORT ignores its data, and unknown
// options are unsupported whatever their data.
func oversizeReply(opt uint32) (uint32, bool) {
	switch opt {
	case optInfo, optGo, optListMetaContext, optSetMetaContext:
		return repErrTooBig, true
	}
	return 0, false
}

// exportNameNegotiated is what NBD_OPT_EXPORT_NAME enters transmission
// with. It ends negotiation just as NBD_OPT_GO does, so what the client
// negotiated before applies (spec: structured replies MUST then be used
// for READ; BLOCK_STATUS needs the meta contexts set for the same name).
func exportNameNegotiated(st *optState, name string, exp *Export, release func()) *negotiated {
	n := &negotiated{exp: exp, release: release, structured: st.structured}
	if st.structured && st.metaExport == name {
		n.meta = st.meta
	}
	return n
}
