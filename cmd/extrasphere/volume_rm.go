package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newVolumeRmCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove"},
		Short:   "Remove a volume and delete its files",
		Long: `Remove a volume and delete its files. A volume with open NBD connections or
running jobs is refused unless --force is given; with --force its jobs are
cancelled and the connected clients get I/O errors.`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			if err := cl.RemoveVolume(c.Context(), args[0], force); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]string{"removed": args[0]})
			}
			fmt.Fprintf(g.stdout, "removed volume %s\n", args[0])
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "remove even if clients are connected or jobs are running")
	return c
}
