package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if g.json {
				return g.printJSON(map[string]string{"version": version})
			}
			_, err := fmt.Fprintf(g.stdout, "extrasphere %s\n", version)
			return err
		},
	}
}
