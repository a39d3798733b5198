package vmdk

import (
	"fmt"
	"math"
	"strings"
)

// maxExtents bounds the extent list (a 2 TiB twoGbMaxExtent disk has 1024).
const maxExtents = 1 << 16

// maxFileName is the longest extent file name qemu reads (%511[^"]).
const maxFileName = 511

// reservedHeader reports the (lower-case) header keys Descriptor holds in
// its own fields.
func reservedHeader(lower string) bool {
	switch lower {
	case "version", "cid", "parentcid", "createtype", "parentfilenamehint":
		return true
	}
	return false
}

// Validate checks that the descriptor is consistent and that Marshal
// writes text that Parse and qemu read back unchanged.
func (d *Descriptor) Validate() error {
	if d.Version < 1 || d.Version > 3 {
		return fmt.Errorf("version %d not 1, 2 or 3: %w", d.Version, ErrInvalid)
	}
	if d.CreateType == "" || !isToken(d.CreateType) {
		return fmt.Errorf("createType %.40q: %w", d.CreateType, ErrInvalid)
	}
	if !safeValue(d.ParentFileNameHint) {
		return fmt.Errorf("parentFileNameHint %.40q: %w", d.ParentFileNameHint, ErrInvalid)
	}
	seen := map[string]bool{}
	for _, kv := range d.Header {
		lower := strings.ToLower(kv.Key)
		if !isToken(kv.Key) || reservedHeader(lower) || strings.HasPrefix(lower, "ddb.") || seen[lower] {
			return fmt.Errorf("header key %.40q: %w", kv.Key, ErrInvalid)
		}
		if !safeValue(kv.Value) {
			return fmt.Errorf("header %s value %.40q: %w", kv.Key, kv.Value, ErrInvalid)
		}
		seen[lower] = true
	}
	if err := d.validateExtents(); err != nil {
		return err
	}
	for _, kv := range d.DDB {
		lower := strings.ToLower(kv.Key)
		if !isToken(kv.Key) || !strings.HasPrefix(lower, "ddb.") || seen[lower] {
			return fmt.Errorf("ddb key %.40q: %w", kv.Key, ErrInvalid)
		}
		if !safeValue(kv.Value) {
			return fmt.Errorf("ddb %s value %.40q: %w", kv.Key, kv.Value, ErrInvalid)
		}
		seen[lower] = true
	}
	return d.validateForQemu()
}

func (d *Descriptor) validateExtents() error {
	if len(d.Extents) == 0 || len(d.Extents) > maxExtents {
		return fmt.Errorf("%d extents: %w", len(d.Extents), ErrInvalid)
	}
	var total int64
	for i, e := range d.Extents {
		if err := e.validate(); err != nil {
			return fmt.Errorf("extent %d: %w", i+1, err)
		}
		if e.Sectors > math.MaxInt64/SectorSize-total {
			return fmt.Errorf("extents overflow 64-bit size: %w", ErrInvalid)
		}
		total += e.Sectors * SectorSize
	}
	return nil
}

func (e Extent) validate() error {
	switch e.Access {
	case AccessRW, AccessRDONLY, AccessNoAccess:
	default:
		return fmt.Errorf("access %.20q: %w", e.Access, ErrInvalid)
	}
	if e.Sectors <= 0 || e.Sectors > math.MaxInt64/SectorSize {
		return fmt.Errorf("sectors %d: %w", e.Sectors, ErrInvalid)
	}
	if e.Offset < 0 || e.Offset > math.MaxInt64/SectorSize {
		return fmt.Errorf("offset %d: %w", e.Offset, ErrInvalid)
	}
	switch e.Type {
	case TypeZero:
		if e.File != "" || e.Offset != 0 {
			return fmt.Errorf("ZERO extent with a file or offset: %w", ErrInvalid)
		}
		return nil
	case TypeFlat:
	case TypeSparse, TypeVMFS, TypeVMFSSparse, TypeVMFSRDM, TypeVMFSRaw:
		if e.Offset != 0 {
			return fmt.Errorf("%s extent with an offset: %w", e.Type, ErrInvalid)
		}
	default:
		return fmt.Errorf("type %.20q: %w", e.Type, ErrInvalid)
	}
	if e.File == "" || len(e.File) > maxFileName || !safeValue(e.File) {
		return fmt.Errorf("file name %.40q: %w", e.File, ErrInvalid)
	}
	return nil
}

// validateForQemu rejects text that qemu would misread: qemu finds
// "parentFileNameHint" with strstr over the whole descriptor, so without
// a parent the string must not appear anywhere (CID, parentCID and
// createType are always written first, so their first match is right).
func (d *Descriptor) validateForQemu() error {
	if d.ParentFileNameHint != "" {
		return nil
	}
	const hint = "parentFileNameHint"
	contains := func(s string) bool { return strings.Contains(s, hint) }
	for _, kv := range append(append([]KeyValue{}, d.Header...), d.DDB...) {
		if contains(kv.Key) || contains(kv.Value) {
			return fmt.Errorf("%s mentions %s without a parent: %w", kv.Key, hint, ErrInvalid)
		}
	}
	for _, e := range d.Extents {
		if contains(e.File) {
			return fmt.Errorf("extent file %.40q mentions %s: %w", e.File, hint, ErrInvalid)
		}
	}
	return nil
}

// safeValue reports whether v can be written inside double quotes on one
// line: no quote and no control character. Other bytes pass through
// unchanged (the descriptor's encoding key names their charset).
func safeValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' || c == 0x7f || c == '"' {
			return false
		}
	}
	return true
}
