package vmdk

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Parse decodes a VMDK text descriptor and validates it. It accepts a
// zero-padded buffer (text up to the first NUL; everything after it must be
// NUL). It never panics.
func Parse(data []byte) (*Descriptor, error) {
	if len(data) > MaxDescriptorSize {
		return nil, fmt.Errorf("descriptor of %d bytes exceeds %d: %w", len(data), MaxDescriptorSize, ErrNotDescriptor)
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		if len(bytes.Trim(data[i:], "\x00")) != 0 {
			return nil, fmt.Errorf("binary data after offset %d: %w", i, ErrNotDescriptor)
		}
		data = data[:i]
	}
	p := parser{d: &Descriptor{}, seen: map[string]bool{}}
	for n, line := range strings.Split(string(data), "\n") {
		if err := p.line(strings.Trim(line, " \t\r\v\f")); err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
	}
	if !p.seen["version"] {
		return nil, fmt.Errorf("no version line: %w", ErrNotDescriptor)
	}
	if err := p.d.Validate(); err != nil {
		return nil, err
	}
	return p.d, nil
}

// parser holds the state of one Parse call.
type parser struct {
	d    *Descriptor
	seen map[string]bool // lower-case header and DDB keys already read
}

func (p *parser) line(s string) error {
	if s == "" || s[0] == '#' {
		return nil // blank, comment or section header
	}
	first := s
	if i := strings.IndexAny(s, " \t"); i >= 0 {
		first = s[:i]
	}
	switch strings.ToUpper(first) {
	case AccessRW, AccessRDONLY, AccessNoAccess:
		e, err := parseExtent(s)
		if err != nil {
			return err
		}
		p.d.Extents = append(p.d.Extents, e)
		return nil
	}
	key, raw, ok := strings.Cut(s, "=")
	key = strings.Trim(key, " \t")
	if !ok || !isToken(key) {
		return fmt.Errorf("unrecognized line %.40q: %w", s, ErrNotDescriptor)
	}
	lower := strings.ToLower(key)
	isDDB := strings.HasPrefix(lower, "ddb.")
	kind := ErrBadHeader
	if isDDB {
		kind = ErrBadDDB
	}
	if p.seen[lower] {
		return fmt.Errorf("repeated key %q: %w", key, kind)
	}
	p.seen[lower] = true
	value, err := unquote(strings.Trim(raw, " \t"))
	if err != nil {
		return fmt.Errorf("key %q: %w: %w", key, kind, err)
	}
	if isDDB {
		p.d.DDB = append(p.d.DDB, KeyValue{Key: key, Value: value})
		return nil
	}
	return p.header(key, lower, value)
}

func (p *parser) header(key, lower, value string) error {
	switch lower {
	case "version":
		v, err := strconv.Atoi(value)
		if err != nil {
			return fmt.Errorf("version %q: %w", value, ErrBadHeader)
		}
		p.d.Version = v
	case "cid", "parentcid":
		v, err := strconv.ParseUint(value, 16, 32)
		if err != nil {
			return fmt.Errorf("%s %q: %w", key, value, ErrBadHeader)
		}
		if lower == "cid" {
			p.d.CID = uint32(v)
		} else {
			p.d.ParentCID = uint32(v)
		}
	case "createtype":
		p.d.CreateType = value
	case "parentfilenamehint":
		p.d.ParentFileNameHint = value
	default:
		p.d.Header = append(p.d.Header, KeyValue{Key: key, Value: value})
	}
	return nil
}

// unquote returns a value without its surrounding double quotes. A quoted
// value ends at its closing quote; neither form may contain another quote.
func unquote(v string) (string, error) {
	if strings.HasPrefix(v, `"`) {
		if len(v) < 2 || !strings.HasSuffix(v, `"`) {
			return "", fmt.Errorf("unterminated quote in %.40q", v)
		}
		v = v[1 : len(v)-1]
	}
	if strings.ContainsRune(v, '"') {
		return "", fmt.Errorf("stray quote in %.40q", v)
	}
	return v, nil
}

// parseExtent decodes: ACCESS SECTORS TYPE ["FILE" [OFFSET]].
func parseExtent(s string) (Extent, error) {
	fields, err := splitExtent(s)
	if err != nil {
		return Extent{}, err
	}
	if len(fields) < 3 || len(fields) > 5 {
		return Extent{}, fmt.Errorf("%d fields in %.60q: %w", len(fields), s, ErrBadExtent)
	}
	e := Extent{Access: strings.ToUpper(fields[0].text), Type: strings.ToUpper(fields[2].text)}
	if fields[0].quoted || fields[1].quoted || fields[2].quoted {
		return Extent{}, fmt.Errorf("quoted access, size or type in %.60q: %w", s, ErrBadExtent)
	}
	e.Sectors, err = strconv.ParseInt(fields[1].text, 10, 64)
	if err != nil || e.Sectors <= 0 || e.Sectors > math.MaxInt64/SectorSize {
		return Extent{}, fmt.Errorf("sector count %.20q: %w", fields[1].text, ErrBadExtent)
	}
	if len(fields) >= 4 {
		if !fields[3].quoted {
			return Extent{}, fmt.Errorf("file name %.40q not quoted: %w", fields[3].text, ErrBadExtent)
		}
		e.File = fields[3].text
	}
	if len(fields) == 5 {
		if fields[4].quoted {
			return Extent{}, fmt.Errorf("quoted offset in %.60q: %w", s, ErrBadExtent)
		}
		e.Offset, err = strconv.ParseInt(fields[4].text, 10, 64)
		if err != nil || e.Offset < 0 || e.Offset > math.MaxInt64/SectorSize {
			return Extent{}, fmt.Errorf("offset %.20q: %w", fields[4].text, ErrBadExtent)
		}
	}
	return e, nil
}

// field is one whitespace-separated word of an extent line; a quoted word
// may hold spaces.
type field struct {
	text   string
	quoted bool
}

func splitExtent(s string) ([]field, error) {
	var out []field
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return out, nil
		}
		if len(out) == 8 {
			return nil, fmt.Errorf("too many fields: %w", ErrBadExtent)
		}
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return nil, fmt.Errorf("unterminated quote: %w", ErrBadExtent)
			}
			out = append(out, field{text: s[1 : 1+end], quoted: true})
			s = s[2+end:]
			if s != "" && s[0] != ' ' && s[0] != '\t' {
				return nil, fmt.Errorf("no space after quoted file name: %w", ErrBadExtent)
			}
			continue
		}
		end := strings.IndexAny(s, " \t")
		if end < 0 {
			end = len(s)
		}
		if strings.ContainsRune(s[:end], '"') {
			return nil, fmt.Errorf("stray quote: %w", ErrBadExtent)
		}
		out = append(out, field{text: s[:end]})
		s = s[end:]
	}
}

// isToken reports whether k can be a key: non-empty, printable ASCII, no
// space, quote, '=' or '#'.
func isToken(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '#' {
			return false
		}
	}
	return true
}
