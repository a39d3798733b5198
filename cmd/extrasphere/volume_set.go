package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newVolumeSetCmd(g *globals) *cobra.Command {
	var ro bool
	c := &cobra.Command{
		Use:   "set NAME --read-only=true|false",
		Short: "Change a volume's settings",
		Long: `Change a volume's settings. The volume must have no open NBD connection:
detach it from its VM first.`,
		Example: "  extrasphere volume set golden-image --read-only=true",
		Args:    exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if !c.Flags().Changed("read-only") {
				return usagef(c.CommandPath(), "nothing to change: give --read-only=true or --read-only=false")
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			v, err := cl.SetReadOnly(c.Context(), args[0], ro)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(v)
			}
			mode := "writable"
			if v.ReadOnly {
				mode = "read-only"
			}
			fmt.Fprintf(g.stdout, "volume %s is now %s\n", v.Name, mode)
			return nil
		},
	}
	c.Flags().BoolVar(&ro, "read-only", false, "serve the volume read-only")
	return c
}
