package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/transfer"
)

// ExportOptions are the parameters of Export.
type ExportOptions struct {
	Path   string // absolute path of the image to write; must not exist
	Format string // raw, qcow2, vmdk, vdi, vhdx; "" from the file extension, else raw
}

// Export starts a job that writes a volume to an image file. Raw images
// are written natively as sparse files (holes and zero blocks are not
// written); other formats are converted by qemu-img from the volume's NBD
// export. The copy is not a snapshot: export a volume no VM is writing to,
// or the image is only crash-consistent at best. A failed or cancelled
// export deletes the partial file.
func (e *Engine) Export(ctx context.Context, name string, o ExportOptions) (job.Info, error) {
	if !filepath.IsAbs(o.Path) {
		return job.Info{}, errorf(errkind.ErrInvalidArgument, "export %s: target path %q must be absolute", name, o.Path)
	}
	format := o.Format
	if format == "" {
		format = formatFromExt(o.Path)
	}
	if !transfer.ValidFormat(format) {
		return job.Info{}, errorf(errkind.ErrInvalidArgument, "export %s: format %q: use one of %v", name, format, transfer.Formats)
	}
	if _, err := os.Lstat(o.Path); err == nil {
		return job.Info{}, errorf(errkind.ErrFileExists, "export %s: %s already exists: remove it or choose another path", name, o.Path)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return job.Info{}, fmt.Errorf("export %s: %w", name, err)
	}
	if fi, err := os.Stat(filepath.Dir(o.Path)); err != nil || !fi.IsDir() {
		return job.Info{}, errorf(errkind.ErrInvalidArgument, "export %s: directory %s does not exist", name, filepath.Dir(o.Path))
	}
	var qemuImg string
	if format != "raw" {
		var err error
		if qemuImg, err = e.qemuImgPath("exporting to " + format); err != nil {
			return job.Info{}, err
		}
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	v, err := e.lookupLocked(name)
	if err != nil {
		return job.Info{}, err
	}
	if v.err != nil || v.dev == nil {
		return job.Info{}, errorf(errkind.ErrVolumeUnavailable, "export %s: volume is unavailable (%v)", name, v.err)
	}
	if v.op != "" {
		return job.Info{}, errorf(errkind.ErrVolumeInUse, "export %s: %s is in progress", name, v.op)
	}
	dev, size := v.dev, v.files.Size

	var fn job.Func
	if format == "raw" {
		fn = func(ctx context.Context, j *job.Job) error { return transfer.CopyOut(ctx, dev, o.Path, j.Add) }
	} else {
		args := []string{"convert", "-p", "-f", "raw", "-O", format, e.UnixURI(name), o.Path}
		fn = func(ctx context.Context, j *job.Job) error {
			return transfer.QemuImgRun(ctx, qemuImg, args, func(pct float64) { j.SetDone(int64(pct / 100 * float64(size))) })
		}
	}
	cleanup := func(err error) error {
		if err == nil {
			return nil
		}
		if rerr := os.Remove(o.Path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return fmt.Errorf("export volume %s: %w; remove the partial file %s by hand: %v", name, err, o.Path, rerr)
		}
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("export volume %s to %s: %w", name, o.Path, err)
	}
	j, err := e.startJobLocked(v, KindExport, size, fn, cleanup)
	if err != nil {
		return job.Info{}, err
	}
	e.log.Info("export started", "job", j.ID(), "volume", name, "path", o.Path, "format", format)
	return j.Info(), nil
}

// formatFromExt maps a file extension to a format, raw when unknown.
func formatFromExt(path string) string {
	ext := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	if ext != "raw" && transfer.ValidFormat(ext) {
		return ext
	}
	return "raw"
}
