package engine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extrasphere/extrasphere/internal/apischema"
	"github.com/extrasphere/extrasphere/internal/errkind"
)

// Wrong backup, restore and repository requests get named errors and
// change nothing.
func TestBackupBadInput(t *testing.T) {
	ctx := t.Context()
	e := openEngine(t, t.TempDir())
	defer e.Close()
	mustCreate(t, e, CreateOptions{Name: "v", Size: 1 << 20})
	if _, err := e.Backup(ctx, apischema.BackupRequest{Volumes: []string{"v"}}); !errors.Is(err, ErrRepoNotFound) || !strings.Contains(err.Error(), "repo init") {
		t.Fatalf("backup without a repository: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "r")
	if _, err := e.AddRepo(ctx, apischema.RepoRequest{Location: dir, Init: true}); err != nil {
		t.Fatal(err)
	}
	ji, err := e.Backup(ctx, apischema.BackupRequest{Volumes: []string{"v"}})
	if err != nil {
		t.Fatal(err)
	}
	if fin, err := e.WaitJob(ctx, ji.ID); err != nil || fin.Error != "" {
		t.Fatalf("backup: %+v %v", fin, err)
	}
	bs, _ := e.ListBackups(ctx, "")
	existing := filepath.Join(t.TempDir(), "exists.raw")
	os.WriteFile(existing, []byte("keep me"), 0o644)
	for _, tc := range []struct {
		name string
		do   func() error
		want error
		says string
	}{
		{"NoVolumes", func() error { _, err := e.Backup(ctx, apischema.BackupRequest{}); return err }, errkind.ErrInvalidArgument, "volume"},
		{"UnknownVolume", func() error { _, err := e.Backup(ctx, apischema.BackupRequest{Volumes: []string{"nope"}}); return err }, errkind.ErrVolumeNotFound, "nope"},
		{"UnknownRepo", func() error {
			_, err := e.Backup(ctx, apischema.BackupRequest{Volumes: []string{"v"}, Repo: "zz"})
			return err
		}, ErrRepoNotFound, "zz"},
		{"RepoExists", func() error { _, err := e.AddRepo(ctx, apischema.RepoRequest{Location: dir, Init: true}); return err }, ErrRepoExists, "default"},
		{"RepoInitOverRepo", func() error {
			_, err := e.AddRepo(ctx, apischema.RepoRequest{Name: "r2", Location: dir, Init: true})
			return err
		}, ErrRepoExists, dir},
		{"RepoRelative", func() error {
			_, err := e.AddRepo(ctx, apischema.RepoRequest{Name: "r3", Location: "rel/dir"})
			return err
		}, errkind.ErrInvalidArgument, "rel/dir"},
		{"RepoNotARepo", func() error {
			_, err := e.AddRepo(ctx, apischema.RepoRequest{Name: "r4", Location: t.TempDir()})
			return err
		}, ErrRepo, "r4"},
		{"PasswordRelative", func() error {
			_, err := e.AddRepo(ctx, apischema.RepoRequest{Name: "r5", Location: t.TempDir(), PasswordFile: "pw"})
			return err
		}, errkind.ErrInvalidArgument, "pw"},
		{"RestoreNoTarget", func() error { _, err := e.Restore(ctx, apischema.RestoreRequest{Backup: bs[0].ID}); return err }, errkind.ErrInvalidArgument, "exactly one target"},
		{"RestoreTwoTargets", func() error {
			_, err := e.Restore(ctx, apischema.RestoreRequest{Backup: bs[0].ID, ToFile: "/tmp/x", ToVolume: "x"})
			return err
		}, errkind.ErrInvalidArgument, "exactly one target"},
		{"RestoreUnknownBackup", func() error {
			_, err := e.Restore(ctx, apischema.RestoreRequest{Backup: "nope", ToVolume: "x"})
			return err
		}, errkind.ErrBackupNotFound, "nope"},
		{"RestoreUnknownSource", func() error {
			_, err := e.Restore(ctx, apischema.RestoreRequest{Backup: bs[0].ID, Volume: "w", ToVolume: "x"})
			return err
		}, errkind.ErrVolumeNotFound, "w"},
		{"RestoreFileExists", func() error {
			_, err := e.Restore(ctx, apischema.RestoreRequest{Backup: bs[0].ID, ToFile: existing})
			return err
		}, errkind.ErrFileExists, existing},
		{"RestoreRelativeFile", func() error {
			_, err := e.Restore(ctx, apischema.RestoreRequest{Backup: bs[0].ID, ToFile: "r.raw"})
			return err
		}, errkind.ErrInvalidArgument, "r.raw"},
		{"RestoreOverVolume", func() error {
			_, err := e.Restore(ctx, apischema.RestoreRequest{Backup: bs[0].ID, ToVolume: "v"})
			return err
		}, errkind.ErrVolumeExists, "v"},
		{"ServeOverVolume", func() error {
			_, err := e.ServeBackup(ctx, apischema.ServeRequest{Backup: bs[0].ID, Name: "v"})
			return err
		}, errkind.ErrVolumeExists, "v"},
		{"ServeBadName", func() error {
			_, err := e.ServeBackup(ctx, apischema.ServeRequest{Backup: bs[0].ID, Name: "a/b"})
			return err
		}, errkind.ErrInvalidArgument, "a/b"},
		{"PruneNoRule", func() error { _, err := e.PruneBackups(ctx, apischema.PruneRequest{}); return err }, errkind.ErrInvalidArgument, "--keep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want %v mentioning %q", err, tc.want, tc.says)
			}
		})
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Error("a refused restore touched the existing file")
	}
	if bs2, _ := e.ListBackups(ctx, ""); len(bs2) != 1 {
		t.Errorf("backups after bad requests: %d, want 1", len(bs2))
	}
	if vs := e.ListVolumes(ctx); len(vs) != 1 {
		t.Errorf("volumes after bad requests: %d, want 1", len(vs))
	}
}
