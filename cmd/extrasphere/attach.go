package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/apischema"
)

func newAttachCmd(g *globals) *cobra.Command {
	var qemu, libvirt, tcp bool
	var tlsDir string
	c := &cobra.Command{
		Use:   "attach NAME --qemu|--libvirt [--tcp]",
		Short: "Print what attaches a volume to a VM",
		Long: `Print the QEMU arguments (--qemu) or the libvirt <disk> element (--libvirt)
that attach volume NAME's NBD export to a VM, through the daemon's unix
socket or, with --tcp, its TCP listener. Both set a reconnect delay, so a
daemon restart pauses guest I/O instead of failing it.

--qemu prints the -blockdev/-device arguments on the first line and a -drive
alternative, commented out, on the second. --libvirt uses target dev 'vda':
change it if the domain already has a disk there.

Over TCP the daemon requires TLS with a client certificate (unless it runs
with --nbd-insecure): make one with "extrasphere client add NAME --volumes
VOLUME --out DIR" and pass --tls-dir DIR (default /etc/pki/qemu, where
libvirt reads them). --qemu then starts with a tls-creds-x509 object the
disk names with tls-creds; --libvirt sets tls='yes'.`,
		Example: `  extrasphere attach vm1-disk0 --qemu
  virsh attach-device vm1 <(extrasphere attach vm1-disk0 --libvirt) --persistent
  extrasphere attach vm1-disk0 --tcp --qemu --tls-dir /etc/extrasphere/host2-certs`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if qemu == libvirt {
				return usagef(c.CommandPath(), "give exactly one of --qemu and --libvirt")
			}
			kind := "qemu"
			if libvirt {
				kind = "libvirt"
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			if tlsDir != "" {
				if !tcp {
					return usagef(c.CommandPath(), "--tls-dir goes with --tcp (the unix socket needs no certificates)")
				}
				if tlsDir, err = filepath.Abs(tlsDir); err != nil {
					return err
				}
			}
			text, err := cl.AttachTLS(c.Context(), args[0], kind, tcp, tlsDir)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]string{"volume": args[0], "kind": kind, "text": text})
			}
			_, err = fmt.Fprint(g.stdout, text)
			return err
		},
	}
	f := c.Flags()
	f.BoolVar(&qemu, "qemu", false, "print QEMU -blockdev arguments")
	f.BoolVar(&libvirt, "libvirt", false, "print a libvirt <disk> element")
	f.BoolVar(&tcp, "tcp", false, "attach over TCP (TLS) instead of the unix socket")
	f.StringVar(&tlsDir, "tls-dir", "", "with --tcp: the client's certificate directory (default "+apischema.DefaultTLSDir+")")
	return c
}
