package sparse

import (
	"fmt"
	"math/bits"
	"slices"
)

// validate checks the header against the file size before anything it
// points to is read. Every offset is checked for overflow, so a hostile
// header never makes Open read or allocate more than the file holds.
func (h *header) validate(fileSize int64) error {
	switch {
	case h.Version == 0:
		return corrupt("header version 0")
	case h.Version > 3:
		return fmt.Errorf("header version %d: %w", h.Version, ErrUnsupported)
	case h.Flags&(flagCompressed|flagMarkers) != 0 || h.Compression != 0:
		return fmt.Errorf("compressed or streamOptimized extent (flags %#x, compression %d): %w",
			h.Flags, h.Compression, ErrUnsupported)
	case h.GDOffset == gdAtEnd:
		return fmt.Errorf("grain directory at end of stream: %w", ErrUnsupported)
	case h.Flags&flagNewlineTest != 0 && string(h.CheckBytes[:]) != checkBytes:
		return corrupt("newline detection bytes %q at offset 73, want %q (file transferred in text mode?)",
			h.CheckBytes[:], checkBytes)
	case h.GrainSectors < minGrainSectors || h.GrainSectors > maxGrainSectors || bits.OnesCount64(h.GrainSectors) != 1:
		return corrupt("grain size %d sectors (want a power of 2 in [%d, %d])", h.GrainSectors, minGrainSectors, maxGrainSectors)
	case h.GTEsPerGT != gtesPerGT:
		return corrupt("%d grain table entries per table, want %d", h.GTEsPerGT, gtesPerGT)
	case h.Capacity == 0 || h.Capacity > maxCapSectors:
		return corrupt("capacity %d sectors (want 1 to 2^32)", h.Capacity)
	case h.DescOffset == 0:
		return fmt.Errorf("no embedded descriptor (a twoGbMaxExtentSparse piece?): %w", ErrUnsupported)
	case h.DescSectors == 0 || h.DescSectors > maxDescSectors:
		return corrupt("embedded descriptor of %d sectors", h.DescSectors)
	}
	fileSectors := uint64(fileSize) / sectorSize
	if h.Overhead > fileSectors {
		return corrupt("file of %d sectors is shorter than its metadata overhead (%d sectors): truncated?", fileSectors, h.Overhead)
	}
	g := geometryOf(h.Capacity, h.GrainSectors)
	check := func(what string, start, n uint64) error {
		if start == 0 || start > fileSectors || n > fileSectors-start {
			return corrupt("%s at sector %d (+%d sectors) outside the %d-sector file", what, start, n, fileSectors)
		}
		return nil
	}
	if err := check("embedded descriptor", h.DescOffset, h.DescSectors); err != nil {
		return err
	}
	if err := check("grain directory", h.GDOffset, uint64(g.gdSectors)); err != nil {
		return err
	}
	if h.Flags&flagRedundantGD != 0 {
		if err := check("redundant grain directory", h.RGDOffset, uint64(g.gdSectors)); err != nil {
			return err
		}
	}
	return nil
}

// region is a run of metadata sectors [start, end).
type region struct {
	what       string
	start, end uint64
}

// checkRegions fails if two metadata regions overlap (a write to one would
// change the other) or one lies past the header's overhead, where grains
// are stored.
func checkRegions(regions []region, overhead uint64) error {
	slices.SortFunc(regions, func(a, b region) int {
		switch {
		case a.start < b.start:
			return -1
		case a.start > b.start:
			return 1
		}
		return 0
	})
	for i, r := range regions {
		if r.end > overhead {
			return corrupt("%s at sectors [%d, %d) reaches past the metadata overhead (%d sectors)", r.what, r.start, r.end, overhead)
		}
		if i > 0 && regions[i-1].end > r.start {
			p := regions[i-1]
			return corrupt("%s at sectors [%d, %d) overlaps %s at [%d, %d)", r.what, r.start, r.end, p.what, p.start, p.end)
		}
	}
	return nil
}

// corrupt returns an ErrCorrupt with what is wrong.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrCorrupt)
}
