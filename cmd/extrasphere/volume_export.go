package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

func newVolumeExportCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "export NAME FILE",
		Short: "Write a volume to a disk image",
		Long: `Write volume NAME to a new image FILE, written by the daemon. Raw images are
written natively as sparse files; qcow2, vmdk, vdi and vhdx go through
qemu-img. Without --format the format follows FILE's extension (.qcow2,
.vmdk, .vdi, .vhdx), else raw. The copy is not a snapshot: export a volume
that no running VM writes to.`,
		Example: `  extrasphere volume export vm1-disk0 /backup/vm1-disk0.qcow2
  extrasphere volume export vm1-disk0 /backup/vm1-disk0.img --format raw`,
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
			j, err := cl.Export(c.Context(), args[0], apischema.ExportRequest{Path: path, Format: format})
			if err != nil {
				return err
			}
			if err := followJob(c, g, cl, j, "export "+args[0]); err != nil {
				return err
			}
			if !g.json {
				fmt.Fprintf(g.stdout, "exported volume %s to %s\n", args[0], path)
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "", "image format: raw, qcow2, vmdk, vdi, vhdx (default: from FILE's extension, else raw)")
	return c
}
