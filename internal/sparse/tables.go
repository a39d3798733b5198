package sparse

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
)

// grainTable is one grain table in memory: the entries of 512 grains and
// where its two copies live in the file.
type grainTable struct {
	entries   [gtesPerGT]atomic.Uint32 // sector of each grain, 0 (unallocated) or 1 (zeroed)
	primary   uint32                   // sector of the table in the file
	redundant uint32                   // sector of the redundant copy, 0 if the file has none
}

// tables is the grain directory in memory.
type tables []*grainTable // nil: grain table not allocated (every grain unallocated)

// loadTables reads both grain directories and every grain table, checks
// that they are consistent with the header and the file, and returns them
// with the end of the last grain (sectors). The header passed validate.
func loadTables(r reader, h *header, fileSize int64) (tables, uint64, error) {
	g := geometryOf(h.Capacity, h.GrainSectors)
	gd, err := readDirectory(r, h.GDOffset, g)
	if err != nil {
		return nil, 0, fmt.Errorf("read grain directory at sector %d: %w", h.GDOffset, err)
	}
	var rgd []uint32
	if h.Flags&flagRedundantGD != 0 {
		if rgd, err = readDirectory(r, h.RGDOffset, g); err != nil {
			return nil, 0, fmt.Errorf("read redundant grain directory at sector %d: %w", h.RGDOffset, err)
		}
	}
	regions := []region{
		{"header", 0, 1},
		{"embedded descriptor", h.DescOffset, h.DescOffset + h.DescSectors},
		{"grain directory", h.GDOffset, h.GDOffset + uint64(g.gdSectors)},
	}
	if rgd != nil {
		regions = append(regions, region{"redundant grain directory", h.RGDOffset, h.RGDOffset + uint64(g.gdSectors)})
	}
	t := make(tables, g.gts)
	for i, sec := range gd {
		if sec == 0 {
			if rgd != nil && rgd[i] != 0 {
				return nil, 0, corrupt("grain directory entry %d is 0 but its redundant entry is %d", i, rgd[i])
			}
			continue
		}
		t[i] = &grainTable{primary: sec}
		regions = append(regions, region{fmt.Sprintf("grain table %d", i), uint64(sec), uint64(sec) + gtSectors})
		if rgd != nil {
			if rgd[i] == 0 {
				return nil, 0, corrupt("redundant grain directory entry %d is 0 but its primary entry is %d", i, sec)
			}
			t[i].redundant = rgd[i]
			regions = append(regions, region{fmt.Sprintf("redundant grain table %d", i), uint64(rgd[i]), uint64(rgd[i]) + gtSectors})
		}
	}
	if err := checkRegions(regions, h.Overhead); err != nil {
		return nil, 0, err
	}
	end, err := t.load(r, h, g, fileSize)
	if err != nil {
		return nil, 0, err
	}
	return t, end, nil
}

// readDirectory reads a grain directory of g.gts entries.
func readDirectory(r reader, sector uint64, g geometry) ([]uint32, error) {
	buf := make([]byte, g.gdSectors*sectorSize)
	if err := r.readAt(buf, int64(sector)*sectorSize); err != nil {
		return nil, err
	}
	gd := make([]uint32, g.gts)
	for i := range gd {
		gd[i] = binary.LittleEndian.Uint32(buf[i*gteBytes:])
	}
	return gd, nil
}

// load reads every allocated grain table (runs of adjacent tables in one
// read) and checks each entry of the capacity's grains: 0, 1 with the
// zeroed-grain flag, or a grain after the overhead and inside the file.
// It returns the end of the last grain in sectors.
func (t tables) load(r reader, h *header, g geometry, fileSize int64) (uint64, error) {
	const maxRun = 256 // tables per read: 512 KiB
	fileSectors := uint64(fileSize) / sectorSize
	var end uint64
	for i := 0; i < len(t); {
		if t[i] == nil {
			i++
			continue
		}
		n := 1
		for i+n < len(t) && n < maxRun && t[i+n] != nil && t[i+n].primary == t[i].primary+uint32(n*gtSectors) {
			n++
		}
		buf := make([]byte, n*gtSectors*sectorSize)
		if err := r.readAt(buf, int64(t[i].primary)*sectorSize); err != nil {
			return 0, fmt.Errorf("read grain tables %d-%d at sector %d: %w", i, i+n-1, t[i].primary, err)
		}
		for k := range n {
			gt := t[i+k]
			for j := range gtesPerGT {
				v := binary.LittleEndian.Uint32(buf[(k*gtesPerGT+j)*gteBytes:])
				gt.entries[j].Store(v)
				grain := int64(i+k)*gtesPerGT + int64(j)
				if grain >= g.grains || v == 0 || v == gteZero && h.Flags&flagZeroGrain != 0 {
					continue // entries past the capacity are kept as read, unused
				}
				sectors := uint64(divUp(uint64(grainLen(h, g, grain)), sectorSize))
				if uint64(v) < h.Overhead || uint64(v) > fileSectors || sectors > fileSectors-uint64(v) {
					return 0, corrupt("grain %d at sector %d (+%d) is not between the overhead (%d) and the end of the %d-sector file",
						grain, v, sectors, h.Overhead, fileSectors)
				}
				end = max(end, uint64(v)+sectors)
			}
		}
		i += n
	}
	return end, nil
}

// grainLen is the number of bytes of grain that hold data: the grain
// size, less for the last grain when the capacity is not a multiple of it.
func grainLen(h *header, g geometry, grain int64) int64 {
	size := int64(h.GrainSectors) * sectorSize
	if grain == g.grains-1 {
		if rest := int64(h.Capacity)*sectorSize - grain*size; rest < size {
			return rest
		}
	}
	return size
}
