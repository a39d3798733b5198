package blockdev

import (
	"context"
	"io"
)

// WriterAt writes into dev as an io.WriterAt (a restore's target), each
// call one WriteAt of dev under ctx.
func WriterAt(ctx context.Context, dev Device) io.WriterAt { return writerAt{ctx, dev} }

type writerAt struct {
	ctx context.Context
	dev Device
}

func (w writerAt) WriteAt(p []byte, off int64) (int, error) {
	if err := w.dev.WriteAt(w.ctx, p, off, 0); err != nil {
		return 0, err
	}
	return len(p), nil
}
