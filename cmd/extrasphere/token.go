package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/api"
)

func newTokenCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "token",
		Short: "Make, list and remove the API's bearer tokens (for --api tcp:)",
		Long: `Bearer tokens authorise requests to the API over TCP (serve --api tcp:HOST:PORT).
Each has a role: admin (everything), operator (volumes, snapshots, jobs,
backups, mirrors), read (read-only routes) or metrics (GET /metrics only).
Make the first token on the daemon's host, over its unix socket; a client
then sets EXTRASPHERE_TOKEN. Only a hash of each token is stored.`,
		Args: noArgs,
		RunE: groupRunE,
	}
	c.AddCommand(newTokenCreateCmd(g), newTokenListCmd(g), newTokenRmCmd(g))
	return c
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var role string
	c := &cobra.Command{
		Use:   "create NAME --role admin|operator|read|metrics",
		Short: "Make a token and print it (once)",
		Long: `Make a token named NAME with a role and print it. The token is shown this once:
the daemon keeps only its hash. Give it to the client as EXTRASPHERE_TOKEN.`,
		Example: `  extrasphere token create laptop --role admin
  extrasphere token create prometheus --role metrics`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			r, err := api.ParseRole(role)
			if err != nil {
				return usagef(c.CommandPath(), "--role: %v", err)
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			t, err := cl.CreateToken(c.Context(), args[0], r)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(t)
			}
			fmt.Fprintf(g.stdout, "token %s (role %s); it is shown this once, store it now:\n\n  %s\n\n", t.Name, t.Role, t.Secret)
			fmt.Fprintf(g.stdout, "Use it from another host with:\n  export %s=%s\n  extrasphere --api tcp:HOST:PORT --api-ca ca-cert.pem volume list\n", envToken, t.Secret)
			fmt.Fprintf(g.stdout, "(ca-cert.pem is DATA/api/%s on this host.)\n", api.CACertFile)
			return nil
		},
	}
	c.Flags().StringVar(&role, "role", "", "admin, operator, read or metrics (required)")
	return c
}

func newTokenListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the tokens (names and roles, never the tokens)",
		Args:    noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			ts, err := cl.Tokens(c.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(ts)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, t.Role, t.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
}

func newTokenRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a token: requests with it fail from now on",
		Args:    exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			if err := cl.RemoveToken(c.Context(), args[0]); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]string{"removed": args[0]})
			}
			fmt.Fprintf(g.stdout, "removed token %s\n", args[0])
			return nil
		},
	}
}
