package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

func newVolumeImportCmd(g *globals) *cobra.Command {
	var format, ds string
	c := &cobra.Command{
		Use:   "import NAME FILE",
		Short: "Create a volume from a disk image",
		Long: `Create volume NAME from the image FILE, which the daemon reads (it must be
reachable from the daemon's host). Raw images are copied natively, skipping
holes and zero blocks; qcow2, vmdk, vdi and vhdx go through qemu-img. Without
--format the format is detected with qemu-img (raw if it is not installed).
A failed or interrupted import removes the new volume.`,
		Example: `  extrasphere volume import vm1-disk0 ./debian-12.qcow2
  extrasphere volume import db ./db.raw --format raw --datastore fast`,
		Args: exactArgs("NAME", "FILE"),
		RunE: func(c *cobra.Command, args []string) error {
			path, err := absPath(c, args[1])
			if err != nil {
				return err
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			j, err := cl.Import(c.Context(), args[0], apischema.ImportRequest{Path: path, Format: format, Datastore: ds})
			if err != nil {
				return err
			}
			if err := followJob(c, g, cl, j, "import "+args[0]); err != nil {
				return err
			}
			if !g.json {
				fmt.Fprintf(g.stdout, "imported %s into volume %s\n", path, args[0])
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "", "image format: raw, qcow2, vmdk, vdi, vhdx (default: detect)")
	c.Flags().StringVar(&ds, "datastore", "", "datastore for the new volume (default \"default\")")
	return c
}
