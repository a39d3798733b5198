package vmdk

import (
	"fmt"
	"strconv"
	"strings"
)

// Marshal encodes the descriptor in the layout qemu-img writes (see the
// package doc). It does not validate: call Validate first for a
// descriptor built by hand.
func (d *Descriptor) Marshal() []byte {
	var b strings.Builder
	b.WriteString("# Disk DescriptorFile\n")
	fmt.Fprintf(&b, "version=%d\n", d.Version)
	fmt.Fprintf(&b, "CID=%08x\n", d.CID)
	fmt.Fprintf(&b, "parentCID=%08x\n", d.ParentCID)
	fmt.Fprintf(&b, "createType=\"%s\"\n", d.CreateType)
	if d.ParentFileNameHint != "" {
		fmt.Fprintf(&b, "parentFileNameHint=\"%s\"\n", d.ParentFileNameHint)
	}
	for _, kv := range d.Header {
		fmt.Fprintf(&b, "%s=\"%s\"\n", kv.Key, kv.Value)
	}
	b.WriteString("\n# Extent description\n")
	for _, e := range d.Extents {
		b.WriteString(e.line())
		b.WriteByte('\n')
	}
	b.WriteString("\n# The Disk Data Base\n#DDB\n\n")
	for _, kv := range d.DDB {
		fmt.Fprintf(&b, "%s = \"%s\"\n", kv.Key, kv.Value)
	}
	return []byte(b.String())
}

// line is the extent's descriptor line. FLAT always carries its offset
// (qemu requires it); VMFS never does (qemu rejects it).
func (e Extent) line() string {
	s := e.Access + " " + strconv.FormatInt(e.Sectors, 10) + " " + e.Type
	if e.Type == TypeZero {
		return s
	}
	s += ` "` + e.File + `"`
	if e.Type == TypeFlat {
		s += " " + strconv.FormatInt(e.Offset, 10)
	}
	return s
}
