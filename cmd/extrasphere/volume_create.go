package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/progress"
)

func newVolumeCreateCmd(g *globals) *cobra.Command {
	var size, ds string
	var prealloc, ro bool
	c := &cobra.Command{
		Use:   "create NAME --size SIZE",
		Short: "Create an empty volume and serve it",
		Example: `  extrasphere volume create vm1-disk0 --size 20G
  extrasphere volume create db --size 100G --datastore fast --preallocate`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if size == "" {
				return usagef(c.CommandPath(), "--size is required (e.g. --size 20G)")
			}
			n, err := parseSize(size)
			if err != nil {
				return usagef(c.CommandPath(), "--size: %v", err)
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			v, err := cl.CreateVolume(c.Context(), apischema.CreateVolumeRequest{Name: args[0], Size: n, Datastore: ds, Preallocate: prealloc, ReadOnly: ro})
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(v)
			}
			fmt.Fprintf(g.stdout, "created volume %s (%s) on datastore %s\n", v.Name, progress.FormatBytes(v.Size), v.Datastore)
			for _, u := range v.Exports {
				fmt.Fprintf(g.stdout, "  %s\n", u)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&size, "size", "", "virtual size, e.g. 20G (binary units K, M, G, T; rounded up to 512 bytes)")
	f.StringVar(&ds, "datastore", "", "datastore to create the volume on (default \"default\")")
	f.BoolVar(&prealloc, "preallocate", false, "allocate every block now instead of a sparse file")
	f.BoolVar(&ro, "read-only", false, "serve the volume read-only")
	return c
}
