package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/api"
)

// Environment variables that set the global flags' defaults.
const (
	envData  = "EXTRASPHERE_DATA"
	envAPI   = "EXTRASPHERE_API"
	envAPICA = "EXTRASPHERE_API_CA"
	// envToken holds the bearer token of the API over TCP. There is no
	// flag for it: a command line is visible to every local user (ps).
	envToken = "EXTRASPHERE_TOKEN"
)

const defaultDataDir = "/var/lib/extrasphere"

// globals are the flags every command shares.
type globals struct {
	data   string
	api    string
	apiCA  string
	json   bool
	stdout io.Writer
	stderr io.Writer
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "extrasphere",
		Short: "Serve VM disks over NBD and manage their volumes",
		Long: `Extrasphere serves virtual machine disks over NBD to QEMU and libvirt.
'extrasphere serve' runs the daemon; the other commands talk to it through its API.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE:          groupRunE,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{cmd: c.CommandPath(), err: err}
	})
	root.CompletionOptions.DisableDefaultCmd = true

	dataDefault := os.Getenv(envData)
	if dataDefault == "" {
		dataDefault = defaultDataDir
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.data, "data", dataDefault, "data directory (env "+envData+")")
	pf.StringVar(&g.api, "api", "", "API address, unix:PATH or tcp:HOST:PORT (env "+envAPI+"; default unix:DATA/api.sock)")
	pf.StringVar(&g.apiCA, "api-ca", os.Getenv(envAPICA), "CA certificate the API's HTTPS certificate must chain to, for --api tcp: (env "+envAPICA+"; default DATA/api/"+api.CACertFile+")")
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON")

	root.AddCommand(newTokenCmd(g), newServeCmd(g), newVolumeCmd(g), newDatastoreCmd(g), newSnapshotCmd(g), newJobCmd(g),
		newCloneCmd(g), newPromoteCmd(g), newMigrateCmd(g), newCBTCmd(g),
		newRepoCmd(g), newBackupCmd(g), newRestoreCmd(g),
		newAttachCmd(g), newVersionCmd(g),
		newNodeCmd(g), newMirrorCmd(g), newFailoverCmd(g), newFailbackCmd(g), newClientCmd(g))
	return root
}

// apiAddr resolves --api: the flag, then EXTRASPHERE_API, then
// unix:$DATA/api.sock.
func (g *globals) apiAddr(c *cobra.Command) (string, error) {
	if c.Flags().Changed("api") {
		return g.api, nil
	}
	if a := os.Getenv(envAPI); a != "" {
		return a, nil
	}
	data, err := filepath.Abs(g.data)
	if err != nil {
		return "", fmt.Errorf("data dir %s: %w", g.data, err)
	}
	return "unix:" + filepath.Join(data, "api.sock"), nil
}

// client returns an API client for the resolved address.
func (g *globals) client(c *cobra.Command) (*api.Client, error) {
	addr, err := g.apiAddr(c)
	if err != nil {
		return nil, err
	}
	o := api.ClientOptions{Token: strings.TrimSpace(os.Getenv(envToken))}
	if !strings.HasPrefix(addr, "unix:") {
		if o.CAPEM, err = g.readAPICA(); err != nil {
			return nil, err
		}
	}
	cl, err := api.NewClientWith(addr, o)
	if err != nil {
		return nil, &usageError{cmd: c.CommandPath(), err: err}
	}
	return cl, nil
}

// readAPICA reads the API's CA certificate: --api-ca (or its env), else
// DATA/api/ca-cert.pem when that exists (the daemon's own host). nil if
// neither: NewClientWith then says what to do.
func (g *globals) readAPICA() ([]byte, error) {
	path := g.apiCA
	if path == "" {
		data, err := filepath.Abs(g.data)
		if err != nil {
			return nil, fmt.Errorf("data dir %s: %w", g.data, err)
		}
		path = filepath.Join(data, "api", api.CACertFile)
		if _, err := os.Stat(path); err != nil {
			return nil, nil
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api CA certificate: %w (give the daemon's DATA/api/%s with --api-ca)", err, api.CACertFile)
	}
	return b, nil
}

// printJSON writes v as indented JSON on stdout.
func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// noArgs refuses positional arguments (root and group commands, where an
// argument is an unknown subcommand).
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		if c.HasSubCommands() {
			return usagef(c.CommandPath(), "unknown command %q for %q", args[0], c.CommandPath())
		}
		return usagef(c.CommandPath(), "%s takes no arguments, got %q", c.CommandPath(), args)
	}
	return nil
}

// exactArgs requires n positional arguments, named in the message.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usagef(c.CommandPath(), "%s needs %d argument(s) (%v), got %d", c.CommandPath(), len(names), names, len(args))
		}
		return nil
	}
}

// groupRunE runs for a group command called without a subcommand: it
// prints the help and fails as a usage error.
func groupRunE(c *cobra.Command, args []string) error {
	c.Help()
	return &usageError{err: fmt.Errorf("%s needs a subcommand", c.CommandPath())}
}
