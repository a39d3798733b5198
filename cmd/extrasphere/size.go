package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parseSize parses a size such as "20G", "512MiB", "1.5T" or "4096".
// Units are binary (K = 1024); a trailing "B" or "iB" is allowed.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(u, "IB")
	if len(u) == len(strings.TrimSpace(strings.ToUpper(t))) { // no "iB": allow a bare "B"
		u = strings.TrimSuffix(u, "B")
	}
	mult := int64(1)
	if n := len(u); n > 0 {
		if i := strings.IndexByte("KMGTPE", u[n-1]); i >= 0 {
			mult = int64(1) << (10 * (i + 1))
			u = u[:n-1]
		}
	}
	if u == "" {
		return 0, fmt.Errorf("size %q: no number", s)
	}
	if n, err := strconv.ParseInt(u, 10, 64); err == nil {
		if n <= 0 || n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q: must be positive and below 8 EiB", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("size %q: want a number with an optional unit K, M, G, T, P (e.g. 20G)", s)
	}
	v := f * float64(mult)
	if v < 1 || v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: must be positive and below 8 EiB", s)
	}
	return int64(v), nil
}
