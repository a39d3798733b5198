package main

import "github.com/spf13/cobra"

func newVolumeCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "volume",
		Short: "Create, list, show, remove, import and export volumes",
		Args:  noArgs,
		RunE:  groupRunE,
	}
	c.AddCommand(newVolumeCreateCmd(g), newVolumeListCmd(g), newVolumeShowCmd(g), newVolumeRmCmd(g),
		newVolumeSetCmd(g), newVolumeImportCmd(g), newVolumeExportCmd(g))
	return c
}
