//go:build pprof

package main

// Profiling builds only (go build -tags pprof): with EXTRASPHERE_PPROF set
// to a loopback host:port, the process serves net/http/pprof there, so
// bench runs can take CPU, heap and trace profiles of the daemon. Release
// builds do not contain this file: the door does not exist there.

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

func init() {
	addr := os.Getenv("EXTRASPHERE_PPROF")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "extrasphere: EXTRASPHERE_PPROF=%q: want a loopback host:port\n", addr)
		os.Exit(exitUsage)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "extrasphere: pprof: %v\n", err)
		os.Exit(exitError)
	}
	go http.Serve(ln, nil)
}
