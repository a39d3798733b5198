// Package vmdk reads and writes VMDK text descriptors, the small text files
// that name a virtual disk's extents (shared/ref/vmdk-format.asciidoc).
//
// Extrasphere stores every base volume as a monolithicFlat pair: a
// descriptor <name>.vmdk and a raw extent <name>-flat.vmdk. Because the
// descriptor is plain VMDK, qemu-img and VMware read a datastore without the
// daemon. The descriptor this package writes looks like this (the exact
// bytes are documented in docs/FORMATS.md; the order matters to qemu, which
// finds "CID", "createType" and "parentFileNameHint" with strstr):
//
//	# Disk DescriptorFile                         signature comment
//	version=1                                     first non-comment line (qemu's probe)
//	CID=9a0ee90a                                  content id, 8 hex digits
//	parentCID=ffffffff                            ffffffff: no parent
//	createType="monolithicFlat"
//	parentFileNameHint="base.vmdk"                only for a delta
//	<other header keys>="..."                     kept from a parsed file
//
//	# Extent description
//	RW 2048 FLAT "x-flat.vmdk" 0                  access, sectors, type, file, offset
//
//	# The Disk Data Base
//	#DDB
//
//	ddb.virtualHWVersion = "4"                    disk database, in order
//	ddb.extrasphere.readOnly = "true"             Extrasphere's own keys
//
// Parse accepts what VMware and qemu write: keys are case-insensitive,
// values may be quoted, comments and blank lines are skipped, and a NUL
// ends the text (descriptors embedded in sparse extents are zero-padded).
// It never panics (FuzzParse) and returns only descriptors that pass
// Validate.
package vmdk
