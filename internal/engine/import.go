package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"github.com/extrasphere/extrasphere/internal/datastore"
	"github.com/extrasphere/extrasphere/internal/errkind"
	"github.com/extrasphere/extrasphere/internal/job"
	"github.com/extrasphere/extrasphere/internal/transfer"
)

// ImportOptions are the parameters of Import.
type ImportOptions struct {
	Path      string // absolute path of the source image, opened by the daemon
	Format    string // raw, qcow2, vmdk, vdi, vhdx; "" to detect
	Datastore string // "" for the default datastore
	Size      int64  // volume size; 0 for the image's virtual size
}

// Import creates volume name from an image file and starts a job that
// copies the image in. Raw images are copied natively (holes and zero
// blocks skipped, the new volume already reads as zeros); other formats
// are converted by qemu-img into the volume's NBD export. If the job fails
// or is cancelled, the new volume is removed again.
func (e *Engine) Import(ctx context.Context, name string, o ImportOptions) (job.Info, error) {
	if err := datastore.CheckName("volume", name); err != nil {
		return job.Info{}, errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	src, srcSize, format, err := e.openSource(ctx, o.Path, o.Format)
	if err != nil {
		return job.Info{}, fmt.Errorf("import %s: %w", name, err)
	}
	size := srcSize
	if o.Size > 0 {
		if o.Size < srcSize {
			closeFile(src)
			return job.Info{}, errorf(errkind.ErrInvalidArgument, "import %s: size %d is smaller than the image (%d bytes)", name, o.Size, srcSize)
		}
		size = o.Size
	}
	if size == 0 {
		closeFile(src)
		return job.Info{}, errorf(errkind.ErrInvalidArgument, "import %s: %s is empty", name, o.Path)
	}
	var fill func(ctx context.Context, j *job.Job, dev blockdev.Device) error
	if format == "raw" {
		fill = func(ctx context.Context, j *job.Job, dev blockdev.Device) error {
			defer src.Close()
			return transfer.CopyIn(ctx, dev, src, srcSize, j.Add)
		}
	} else {
		qemuImg, err := e.qemuImgPath("importing a " + format + " image")
		if err != nil { // checked by openSource; the binary vanished since
			return job.Info{}, err
		}
		args := []string{"convert", "-p", "-n", "--target-is-zero", "-f", format, "-O", "raw", o.Path, e.UnixURI(name)}
		fill = func(ctx context.Context, j *job.Job, dev blockdev.Device) error {
			return transfer.QemuImgRun(ctx, qemuImg, args, func(pct float64) { j.SetDone(int64(pct / 100 * float64(j.Info().Total))) })
		}
	}
	j, err := e.fillNew(ctx, KindImport, CreateOptions{Name: name, Size: size, Datastore: o.Datastore}, fill)
	if err != nil {
		closeFile(src)
		return job.Info{}, err
	}
	e.log.Info("import started", "job", j.ID(), "volume", name, "path", o.Path, "format", format, "size", j.Info().Total)
	return j.Info(), nil
}

// fillNew creates a volume marked unfinished and runs fill into its
// device as a job of kind (import, restore). The job counts as the
// volume's; its cleanup (finishOrRemove) clears the marker on success and
// removes the partial volume on failure or cancellation, so a crash
// never leaves a partly filled volume that looks whole.
func (e *Engine) fillNew(ctx context.Context, kind string, o CreateOptions, fill func(ctx context.Context, j *job.Job, dev blockdev.Device) error) (*job.Job, error) {
	info, err := e.createVolume(ctx, o, true)
	if err != nil {
		return nil, err
	}
	cleanup := e.finishOrRemove(kind+" into", o.Name) // "import into", "restore into"
	var j *job.Job
	e.mu.Lock()
	v, err := e.lookupLocked(o.Name)
	if err == nil && v.dev == nil {
		err = errorf(errkind.ErrVolumeUnavailable, "volume %s is unavailable (%v)", o.Name, v.err)
	}
	if err == nil {
		dev := v.dev // the gate: a pivot changes what is below it, never the gate
		j, err = e.startJobLocked(v, kind, info.Size, func(ctx context.Context, j *job.Job) error { return fill(ctx, j, dev) }, cleanup)
	}
	e.mu.Unlock()
	if err != nil {
		return nil, cleanup(err) // the partial volume goes
	}
	return j, nil
}

// openSource checks the source image and returns its virtual size and
// format. For raw images it returns the open file; otherwise src is nil.
func (e *Engine) openSource(ctx context.Context, path, format string) (src *os.File, size int64, fmtOut string, err error) {
	if !filepath.IsAbs(path) {
		return nil, 0, "", errorf(errkind.ErrInvalidArgument, "source path %q must be absolute", path)
	}
	if format != "" && !transfer.ValidFormat(format) {
		return nil, 0, "", errorf(errkind.ErrInvalidArgument, "format %q: use one of %v", format, transfer.Formats)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, "", errorf(errkind.ErrInvalidArgument, "source %s: %w", path, err)
	}
	if fi.IsDir() {
		return nil, 0, "", errorf(errkind.ErrInvalidArgument, "source %s is a directory", path)
	}
	if format == "" {
		format = "raw"
		if qemuImg, err := e.qemuImgPath("format detection"); err == nil {
			in, err := e.imageInfo(ctx, qemuImg, path, "")
			if err != nil {
				return nil, 0, "", err
			}
			format = in.Format
			if !transfer.ValidFormat(format) {
				return nil, 0, "", errorf(errkind.ErrInvalidArgument, "source %s is a %s image; supported: %v", path, format, transfer.Formats)
			}
		}
	}
	if format != "raw" {
		qemuImg, err := e.qemuImgPath("importing a " + format + " image")
		if err != nil {
			return nil, 0, "", err
		}
		in, err := e.imageInfo(ctx, qemuImg, path, format)
		if err != nil {
			return nil, 0, "", err
		}
		return nil, in.VirtualSize, format, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, "", errorf(errkind.ErrInvalidArgument, "open source: %w", err)
	}
	size, err = f.Seek(0, io.SeekEnd) // works for block devices too, unlike Stat
	if err != nil {
		f.Close()
		return nil, 0, "", fmt.Errorf("size of %s: %w", path, err)
	}
	return f, size, "raw", nil
}

func closeFile(f *os.File) {
	if f != nil {
		f.Close()
	}
}

// finishOrRemove is the cleanup of a job that fills a new volume (import,
// restore): on success the unfinished marker goes; on failure the partial
// volume is removed once no connection uses it.
func (e *Engine) finishOrRemove(what, name string) func(error) error {
	return func(err error) error {
		if err == nil {
			err = e.finishImport(name)
		}
		if err == nil {
			return nil
		}
		if rerr := e.removeWhenReleased(name); rerr != nil {
			return fmt.Errorf("%s volume %s: %w; the partial volume was kept: %v", what, name, err, rerr)
		}
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("%s volume %s: %w; the partial volume was removed", what, name, err)
	}
}

// finishImport clears the importing marker of a completed import.
func (e *Engine) finishImport(name string) error {
	e.mu.Lock()
	v, ok := e.volumes[name]
	e.mu.Unlock()
	if !ok {
		return notFound(name)
	}
	if err := v.ds.ds.ClearImporting(name); err != nil {
		return err
	}
	e.mu.Lock()
	v.files.Importing = false
	e.mu.Unlock()
	return nil
}

// qemuImgPath finds qemu-img or returns errkind.ErrQemuImgMissing with a hint.
func (e *Engine) qemuImgPath(why string) (string, error) {
	p, err := exec.LookPath(e.cfg.QemuImg)
	if err != nil {
		return "", errorf(errkind.ErrQemuImgMissing, "%s needs %s, which is not installed (apt-get install qemu-utils)", why, e.cfg.QemuImg)
	}
	return p, nil
}

// imageInfo is transfer.QemuImgInfo with an unusable image reported as
// errkind.ErrInvalidArgument.
func (e *Engine) imageInfo(ctx context.Context, qemuImg, path, format string) (transfer.ImageInfo, error) {
	in, err := transfer.QemuImgInfo(ctx, qemuImg, path, format)
	if errors.Is(err, transfer.ErrBadImage) {
		err = errorf(errkind.ErrInvalidArgument, "%w", err)
	}
	return in, err
}
