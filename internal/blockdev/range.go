package blockdev

// Range is a run of bytes of a device, [Off, Off+Len). It is the one type
// every package passes byte ranges in: a CBT bitmap's dirty runs, the
// mirror's dirty set, a backup's changed and zero regions, a copy's data
// runs.
//
// Its JSON form {"Off":…,"Len":…} crosses the wire between nodes (the
// dirty set of a failback response): the field names and their types are
// part of that format and must not change.
type Range struct{ Off, Len int64 }
