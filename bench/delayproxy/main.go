// Command delayproxy is a TCP proxy that adds one-way latency, for the
// benches (netem is not available here): every byte read from one side is
// written to the other side Delay later, pipelined, in both directions.
//
//	delayproxy --listen 127.0.0.1:10900 --to 127.0.0.1:10901 --delay 5ms
//	delayproxy --listen 127.0.0.1:0 --to unix:/path/to/target.sock --delay 5ms --addr-file F
//
// With --addr-file the listening HOST:PORT is written to F (temp file, then
// rename) once the proxy accepts connections, so a script can use port 0.
// It runs until SIGINT or SIGTERM.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/extrasphere/extrasphere/internal/netproxy"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "delayproxy: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("delayproxy", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "HOST:PORT to accept connections on")
	to := fs.String("to", "", "target: HOST:PORT or unix:PATH")
	delay := fs.Duration("delay", 5*time.Millisecond, "one-way latency added in each direction")
	addrFile := fs.String("addr-file", "", "write the listening HOST:PORT to this file")
	verbose := fs.Bool("v", false, "log every connection")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if *to == "" {
		return fmt.Errorf("--to is required")
	}
	if *delay < 0 {
		return fmt.Errorf("--delay must not be negative, got %v", *delay)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	p := netproxy.New(ln, *to, netproxy.Options{Delay: *delay, Logger: log})
	log.Info("delayproxy listening", "addr", p.Addr().String(), "to", *to, "delay", *delay)
	if *addrFile != "" {
		if err := writeAddr(*addrFile, p.Addr().String()); err != nil {
			p.Close()
			return err
		}
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- p.Serve() }()
	select {
	case s := <-sig:
		log.Info("delayproxy stopping", "signal", s.String())
		if err := p.Close(); err != nil {
			return err
		}
		return <-errc
	case err := <-errc:
		p.Close()
		return err
	}
}

// writeAddr writes addr to path atomically: a reader sees all or nothing.
func writeAddr(path, addr string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(addr+"\n"), 0o644); err != nil {
		return fmt.Errorf("write address file %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename address file to %s: %w", path, err)
	}
	return nil
}
