package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/api"
)

// defaultNodePort is the node port `serve --node` listens on by default
// (0.0.0.0:10810).
const defaultNodePort = "10810"

func newNodeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "node",
		Short: "This node's identity and its trust in other nodes (pairing)",
		Long: `Each daemon has a node identity: a key and a self-signed certificate, known to
other nodes by its SHA-256 fingerprint. Two nodes pair once, with mutual TLS
and no ssh: on node B run 'extrasphere node show', then on node A run the
'extrasphere node pair' line it prints. A checks that it reached the node of
the code's fingerprint, B checks the code's secret, and each then trusts the
other's certificate for mirroring and failover.

The pairing code lets anyone who holds it pair with the node: share it like a
password.`,
		Args: noArgs,
		RunE: groupRunE,
	}
	c.AddCommand(newNodeInitCmd(g), newNodeShowCmd(g), newNodePairCmd(g), newNodeListCmd(g), newNodeUnpairCmd(g))
	return c
}

func newNodeInitCmd(g *globals) *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:     "init",
		Short:   "Create this node's key and certificate",
		Example: "  extrasphere node init\n  extrasphere node init --name host1",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if name == "" {
				h, err := os.Hostname()
				if err != nil {
					return usagef(c.CommandPath(), "no host name (%v): give --name", err)
				}
				name = h
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.InitNode(c.Context(), name)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(in)
			}
			fmt.Fprintf(g.stdout, "created node identity %s\n", in.Name)
			printNode(g.stdout, in)
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "node name (default: the host name)")
	return c
}

func newNodeShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show this node's name, fingerprint and a fresh pairing code",
		Long: `Show this node's name, fingerprint and peers, and make a fresh pairing code.
A code pairs one node, once, within 15 minutes; run 'node show' again for another.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.Node(c.Context())
			if err != nil {
				return err
			}
			pc, err := cl.NewPairingCode(c.Context())
			if err != nil {
				return fmt.Errorf("make a pairing code: %w", err)
			}
			in.PairingCode, in.CodeExpires = pc.Code, &pc.Expires
			if g.json {
				return g.printJSON(in)
			}
			printNode(g.stdout, in)
			return nil
		},
	}
}

// printNode prints the identity and how another node pairs with this one.
func printNode(w io.Writer, in api.NodeInfo) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "name\t%s\n", in.Name)
	fmt.Fprintf(tw, "fingerprint\t%s\n", in.Fingerprint)
	fmt.Fprintf(tw, "pairing code\t%s\n", in.PairingCode)
	if in.CodeExpires != nil {
		fmt.Fprintf(tw, "code expires\t%s (single use)\n", in.CodeExpires.Local().Format(time.DateTime))
	}
	fmt.Fprintf(tw, "peers\t%d\n", len(in.Peers))
	tw.Flush()
	fmt.Fprintf(w, "\nTo pair another node with this one, run on it:\n  extrasphere node pair %s --code %s\n",
		pairTarget(in.Addr), in.PairingCode)
}

// pairTarget is the HOST:PORT other nodes reach this node's port at: the
// daemon's advertised address, with the host name when it listens on all
// addresses or tells none.
func pairTarget(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = "", defaultNodePort
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		} else {
			host = "THIS_HOST"
		}
	}
	return net.JoinHostPort(host, port)
}

func newNodePairCmd(g *globals) *cobra.Command {
	var code string
	c := &cobra.Command{
		Use:   "pair HOST:PORT --code CODE",
		Short: "Pair with another node (both trust each other afterwards)",
		Long: `Pair this node with the node whose node port is HOST:PORT. CODE is the pairing
code 'extrasphere node show' prints on that node. This node's daemon checks
that the other node's certificate has the code's fingerprint before it
sends anything, so a man in the middle is refused.`,
		Example: "  extrasphere node pair host2:10810 --code 3f1c...e2-MZXW6YTBOI2DQNBVGY3TQOJQGA",
		Args:    exactArgs("HOST:PORT"),
		RunE: func(c *cobra.Command, args []string) error {
			if code == "" {
				return usagef(c.CommandPath(), "--code is required (run `extrasphere node show` on the other node)")
			}
			addr := args[0]
			if _, _, err := net.SplitHostPort(addr); err != nil {
				addr = net.JoinHostPort(addr, defaultNodePort)
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			p, err := cl.PairNode(c.Context(), addr, strings.TrimSpace(code))
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(p)
			}
			fmt.Fprintf(g.stdout, "paired with node %s at %s\nverified fingerprint %s\nit trusts this node too\n", p.Name, p.Addr, p.Fingerprint)
			return nil
		},
	}
	c.Flags().StringVar(&code, "code", "", "the other node's pairing code")
	return c
}

func newNodeListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the paired nodes",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			peers, err := cl.NodePeers(c.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(peers)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tADDRESS\tFINGERPRINT\tPAIRED")
			for _, p := range peers {
				addr := p.Addr
				if addr == "" {
					addr = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, addr, p.Fingerprint, p.Added.Local().Format("2006-01-02 15:04:05"))
			}
			return tw.Flush()
		},
	}
}

func newNodeUnpairCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unpair NAME",
		Short: "Stop trusting a paired node (on this node only)",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			if err := cl.UnpairNode(c.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "unpaired node %s: this node no longer trusts it (it still trusts this one until it unpairs too)\n", args[0])
			return nil
		},
	}
}
