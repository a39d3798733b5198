package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/pki"
)

func newClientCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "client",
		Short: "NBD clients allowed over TCP: certificates and the volumes they may open",
		Long: `NBD over TCP requires TLS and a client certificate issued by this node.
"client add" makes one for a host (a QEMU, a backup tool) and names the
volumes it may list and open; "client rm" revokes it for every new
connection at once. Local VMs can use the unix socket without a certificate.`,
		Args: noArgs,
		RunE: groupRunE,
	}
	c.AddCommand(newClientAddCmd(g), newClientListCmd(g), newClientRmCmd(g))
	return c
}

func newClientAddCmd(g *globals) *cobra.Command {
	var (
		vols     []string
		readOnly bool
		out      string
	)
	c := &cobra.Command{
		Use:   "add NAME --volumes A,B --out DIR",
		Short: "Issue a client certificate that may open the given volumes",
		Long: `Issue a client certificate and write, into DIR (created, mode 0700):
  ca-cert.pem      this node's NBD CA (verifies the server)
  client-cert.pem  the client's certificate
  client-key.pem   the client's private key (mode 0600; made here, never sent)
the layout QEMU's tls-creds-x509 (dir=DIR, endpoint=client) and libnbd's
tls-certificates=DIR read. Give DIR to the client host; for libvirt put the
files in /etc/pki/qemu (or qemu.conf's nbd_tls_x509_cert_dir).`,
		Example: `  extrasphere client add host2-qemu --volumes vm1-disk0,vm1-disk1 --out ./host2-certs
  extrasphere client add backup --volumes vm1-disk0 --read-only --out /etc/backup/nbd
  nbdinfo 'nbds://node1:10809/vm1-disk0?tls-certificates=./host2-certs'`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			if out == "" {
				return usagef(c.CommandPath(), "--out DIR is required: where to write the certificates")
			}
			if len(vols) == 0 {
				return usagef(c.CommandPath(), "--volumes is required: the volumes the client may open")
			}
			dir, err := filepath.Abs(out)
			if err != nil {
				return err
			}
			if err := checkCertDir(dir); err != nil {
				return err
			}
			keyPEM, pubPEM, err := pki.NewClientKey()
			if err != nil {
				return err
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			cr, err := cl.AddClient(c.Context(), apischema.ClientRequest{Name: args[0], Volumes: vols, ReadOnly: readOnly, PublicKey: string(pubPEM)})
			if err != nil {
				return err
			}
			if err := writeCertDir(dir, []byte(cr.CAPEM), []byte(cr.CertPEM), keyPEM); err != nil {
				return fmt.Errorf("%w (the client %s was added: `extrasphere client rm %s` and add it again)", err, args[0], args[0])
			}
			if g.json {
				return g.printJSON(map[string]any{"client": cr.Client, "dir": dir})
			}
			access := "read-write"
			if cr.Client.ReadOnly {
				access = "read-only"
			}
			fmt.Fprintf(g.stdout, "added NBD client %s (%s: %s)\n", cr.Client.Name, access, strings.Join(cr.Client.Volumes, ", "))
			fmt.Fprintf(g.stdout, "certificates in %s (%s, %s, %s)\n", dir, pki.CACertFile, pki.ClientCertFile, pki.ClientKeyFile)
			fmt.Fprintf(g.stdout, "QEMU:    extrasphere attach %s --tcp --qemu --tls-dir %s\n", cr.Client.Volumes[0], dir)
			fmt.Fprintf(g.stdout, "nbdinfo: nbdinfo 'nbds://HOST:PORT/%s?tls-certificates=%s'\n", cr.Client.Volumes[0], dir)
			return nil
		},
	}
	f := c.Flags()
	f.StringSliceVar(&vols, "volumes", nil, "volumes the client may list and open, comma-separated")
	f.BoolVar(&readOnly, "read-only", false, "the client may read but not write")
	f.StringVar(&out, "out", "", "directory to write ca-cert.pem, client-cert.pem and client-key.pem into")
	return c
}

// checkCertDir refuses a DIR that already holds a client's files: they
// would be overwritten while some client may still use them.
func checkCertDir(dir string) error {
	for _, n := range []string{pki.ClientCertFile, pki.ClientKeyFile} {
		p := filepath.Join(dir, n)
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists: choose another --out directory, or remove the old files first", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writeCertDir writes a client's files in the layout QEMU and libnbd read.
func writeCertDir(dir string, caPEM, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{pki.ClientKeyFile, keyPEM, 0o600},
		{pki.ClientCertFile, certPEM, 0o644},
		{pki.CACertFile, caPEM, 0o644},
	} {
		if err := pki.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

func newClientListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the NBD clients and what they may open",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			cs, err := cl.Clients(c.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(cs)
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tACCESS\tVOLUMES\tFINGERPRINT\tADDED")
			for _, x := range cs {
				access := "read-write"
				if x.ReadOnly {
					access = "read-only"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", x.Name, access, strings.Join(x.Volumes, ","), x.Fingerprint, x.Added.Format("2006-01-02 15:04"))
			}
			return w.Flush()
		},
	}
}

func newClientRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Revoke an NBD client: its certificate opens nothing from now on",
		Long: `Revoke an NBD client. Every new connection with its certificate is refused at
once; connections already open stay until they end (restart the client's
QEMU, or the daemon, to end them now).`,
		Args: exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			if err := cl.RemoveClient(c.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "revoked NBD client %s\n", args[0])
			return nil
		},
	}
}
