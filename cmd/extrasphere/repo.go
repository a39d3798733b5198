package main

import (
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/progress"
	"github.com/extrasphere/extrasphere/internal/repo/backend/s3"
)

func newRepoCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "repo",
		Short: "Backup repositories: a local directory or S3-compatible storage",
		Long: `A backup repository holds deduplicated, compressed (and optionally encrypted)
backups of volumes. It is a directory or an S3 bucket and prefix
(s3://BUCKET/PREFIX with --endpoint). The daemon opens it; the password, if
any, is read by the daemon from --password-file. S3 keys come from
--access-key/--secret-key or, when not given, from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY in this command's environment; the daemon keeps them in
its catalog (mode 0600). The repository named "default" is used when a
command does not say --repo.`,
		Args: noArgs,
		RunE: groupRunE,
	}
	c.AddCommand(newRepoAddCmd(g, true), newRepoAddCmd(g, false), newRepoListCmd(g), newRepoRmCmd(g))
	return c
}

func newRepoAddCmd(g *globals, create bool) *cobra.Command {
	var req apischema.RepoRequest
	use, short := "add LOCATION", "Use an existing repository"
	if create {
		use, short = "init LOCATION", "Create a repository and use it"
	}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Example: "  extrasphere repo init /srv/backups --password-file /etc/extrasphere/repo.pw\n" +
			"  extrasphere repo init s3://backups/host1 --endpoint https://s3.example.com --name offsite",
		Args: exactArgs("LOCATION"),
		RunE: func(c *cobra.Command, args []string) error {
			req.Location, req.Init = args[0], create
			if !s3.IsURL(req.Location) {
				abs, err := filepath.Abs(req.Location)
				if err != nil {
					return err
				}
				req.Location = abs
			}
			if req.PasswordFile != "" {
				abs, err := filepath.Abs(req.PasswordFile)
				if err != nil {
					return err
				}
				req.PasswordFile = abs
			}
			if req.AccessKey == "" && req.SecretKey == "" && s3.IsURL(req.Location) {
				req.AccessKey, req.SecretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
			}
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			in, err := cl.AddRepo(c.Context(), req)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(in)
			}
			verb := "added"
			if create {
				verb = "created"
			}
			enc := "not encrypted"
			if in.Encrypted {
				enc = "encrypted"
			}
			fmt.Fprintf(g.stdout, "%s repository %s at %s (%s, %s chunks)\n", verb, in.Name, in.Location, enc, progress.FormatBytes(int64(in.ChunkSize)))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&req.Name, "name", apischema.DefaultRepo, "repository name")
	f.StringVar(&req.Endpoint, "endpoint", "", "S3 endpoint URL (http://HOST:PORT or https://...)")
	f.BoolVar(&req.Insecure, "insecure", false, "plain HTTP to a bare HOST:PORT endpoint")
	f.StringVar(&req.Region, "region", "", "S3 region (default: discovered)")
	f.StringVar(&req.AccessKey, "access-key", "", "S3 access key (default: $AWS_ACCESS_KEY_ID)")
	f.StringVar(&req.SecretKey, "secret-key", "", "S3 secret key (default: $AWS_SECRET_ACCESS_KEY)")
	f.StringVar(&req.PasswordFile, "password-file", "", "encrypt with the password in this file (read by the daemon)")
	if create {
		f.IntVar(&req.ChunkSize, "chunk-size", 0, "chunk size in bytes, a power of two (default: the repository's)")
	}
	return c
}

func newRepoListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the backup repositories",
		Args:  noArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			rs, err := cl.Repos(c.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(rs)
			}
			w := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tLOCATION\tENCRYPTED\tSTATUS")
			for _, r := range rs {
				st := "ok"
				if r.Error != "" {
					st = r.Error
				}
				loc := r.Location
				if r.Endpoint != "" {
					loc += " (" + r.Endpoint + ")"
				}
				fmt.Fprintf(w, "%s\t%s\t%v\t%s\n", r.Name, loc, r.Encrypted, st)
			}
			return w.Flush()
		},
	}
}

func newRepoRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Forget a repository (its data stays where it is)",
		Args:  exactArgs("NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := g.client(c)
			if err != nil {
				return err
			}
			if err := cl.RemoveRepo(c.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "forgot repository %s (its data was not touched)\n", args[0])
			return nil
		},
	}
}
