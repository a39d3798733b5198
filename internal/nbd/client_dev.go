package nbd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/extrasphere/extrasphere/internal/blockdev"
	"golang.org/x/sync/errgroup"
)

// Size is the export size.
func (c *Client) Size() int64 { return c.size }

// Caps are the export's capabilities as the server advertised them.
func (c *Client) Caps() blockdev.Caps { return c.caps }

// ReadAt reads p at off, split into MaxPayload requests sent together.
func (c *Client) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := blockdev.CheckRange(c.size, c.caps.MinBlock, off, int64(len(p))); err != nil {
		return err
	}
	if len(p) == 0 {
		return c.alive()
	}
	return c.split(ctx, int64(len(p)), func(ctx context.Context, o, n int64) error {
		return c.do(ctx, &call{cmd: cmdRead, off: uint64(off + o), buf: p[o : o+n]}, 0, uint32(n), nil)
	})
}

// WriteAt writes p at off; FUA is passed through.
func (c *Client) WriteAt(ctx context.Context, p []byte, off int64, flags blockdev.WriteFlags) error {
	if err := c.checkWrite(off, int64(len(p))); err != nil {
		return err
	}
	if len(p) == 0 {
		return c.alive()
	}
	f := c.fua(flags)
	return c.split(ctx, int64(len(p)), func(ctx context.Context, o, n int64) error {
		return c.do(ctx, &call{cmd: cmdWrite, off: uint64(off + o)}, f, uint32(n), p[o:o+n])
	})
}

// WriteZeroes zeroes the range; NoHole and FastZero are passed through.
func (c *Client) WriteZeroes(ctx context.Context, off, length int64, flags blockdev.WriteFlags) error {
	if err := c.checkWrite(off, length); err != nil {
		return err
	}
	if flags&blockdev.FastZero != 0 && !c.caps.FastZero {
		return fmt.Errorf("nbd write zeroes: %w", blockdev.ErrNotFast)
	}
	f := c.fua(flags)
	if flags&blockdev.NoHole != 0 {
		f |= cmdFlagNoHole
	}
	if flags&blockdev.FastZero != 0 {
		f |= cmdFlagFastZero
	}
	return c.ranges(ctx, off, length, func(o int64, n uint32) error {
		return c.do(ctx, &call{cmd: cmdWriteZeroes, off: uint64(o)}, f, n, nil)
	})
}

// Trim passes a trim through when the server supports it.
func (c *Client) Trim(ctx context.Context, off, length int64, flags blockdev.WriteFlags) error {
	if err := c.checkWrite(off, length); err != nil {
		return err
	}
	if !c.caps.Trim {
		return nil // a trim may always do nothing
	}
	f := c.fua(flags)
	return c.ranges(ctx, off, length, func(o int64, n uint32) error {
		return c.do(ctx, &call{cmd: cmdTrim, off: uint64(o)}, f, n, nil)
	})
}

// Flush sends NBD_CMD_FLUSH.
func (c *Client) Flush(ctx context.Context) error {
	if !c.caps.Flush {
		return nil // the server has nothing to flush (it says so)
	}
	return c.do(ctx, &call{cmd: cmdFlush}, 0, 0, nil)
}

// BlockStatus asks for one meta context selected at Dial.
func (c *Client) BlockStatus(ctx context.Context, meta string, off, length int64) ([]blockdev.Extent, error) {
	id, ok := c.meta[meta]
	if !ok {
		return nil, fmt.Errorf("nbd block status %q: %w", meta, blockdev.ErrUnknownContext)
	}
	if err := blockdev.CheckRange(c.size, c.caps.MinBlock, off, length); err != nil {
		return nil, err
	}
	if length == 0 {
		return nil, c.alive()
	}
	cl := &call{cmd: cmdBlockStatus, off: uint64(off), metaID: id}
	if err := c.do(ctx, cl, 0, uint32(min(length, 1<<31)), nil); err != nil {
		return nil, err
	}
	if len(cl.ext) == 0 {
		return nil, fmt.Errorf("nbd block status %q at %d: server returned no extent", meta, off)
	}
	return cl.ext, nil
}

// Close sends NBD_CMD_DISC and closes; requests still in flight fail
// with ErrClosed. Later calls fail with ErrClosed.
// discTimeout bounds the send of NBD_CMD_DISC at Close: a peer that does
// not take 28 bytes within it is not listening, and the connection is
// closed anyway.
const discTimeout = time.Second

func (c *Client) Close() error {
	c.mu.Lock()
	if errors.Is(c.err, blockdev.ErrClosed) {
		c.mu.Unlock()
		return errClientClosed
	}
	broken := c.err != nil
	c.err = errClientClosed // from now on every call fails with ErrClosed
	c.mu.Unlock()
	// The goodbye is sent only if no send is stuck (a peer that stopped
	// reading would block Close for ever): closing is what matters.
	if !broken && c.wmu.TryLock() {
		var hb [requestSize]byte
		encodeRequest(hb[:], request{typ: cmdDisc})
		c.nc.SetWriteDeadline(time.Now().Add(discTimeout))
		c.bw.Write(hb[:])
		c.bw.Flush()
		c.wmu.Unlock()
	}
	c.nc.Close()
	<-c.done
	return nil
}

// Abort drops the connection at once, without NBD_CMD_DISC: the socket is
// reset (SO_LINGER 0), so requests not yet sent are discarded instead of
// reaching the server later, and requests in flight fail with ErrClosed.
// Use it for a connection given up on (a timed-out replica); Close is the
// orderly end. Later calls fail with ErrClosed.
func (c *Client) Abort() error {
	c.mu.Lock()
	if errors.Is(c.err, blockdev.ErrClosed) {
		c.mu.Unlock()
		return errClientClosed
	}
	c.err = errClientClosed
	c.mu.Unlock()
	resetConn(c.raw)
	<-c.done
	return nil
}

func (c *Client) checkWrite(off, length int64) error {
	if c.caps.ReadOnly {
		return fmt.Errorf("nbd export: %w", blockdev.ErrReadOnly)
	}
	return blockdev.CheckRange(c.size, c.caps.MinBlock, off, length)
}

func (c *Client) fua(flags blockdev.WriteFlags) uint16 {
	if flags&blockdev.FUA != 0 && c.caps.FUA {
		return cmdFlagFUA
	}
	return 0
}

// split runs fn over [0, n) in MaxPayload pieces, all in flight at once.
func (c *Client) split(ctx context.Context, n int64, fn func(ctx context.Context, o, n int64) error) error {
	step := int64(c.caps.MaxPayload)
	if n <= step {
		return fn(ctx, 0, n)
	}
	g, gctx := errgroup.WithContext(ctx)
	for o := int64(0); o < n; o += step {
		g.Go(func() error { return fn(gctx, o, min(step, n-o)) })
	}
	return g.Wait()
}

// ranges runs fn over [off, off+length) in pieces that fit a u32 length.
func (c *Client) ranges(ctx context.Context, off, length int64, fn func(o int64, n uint32) error) error {
	const step = 1 << 30
	if length == 0 {
		return c.alive()
	}
	for length > 0 {
		n := min(length, step)
		if err := fn(off, uint32(n)); err != nil {
			return err
		}
		off, length = off+n, length-n
	}
	return nil
}

// IsUnknownExport reports whether err means the server has no such export.
func IsUnknownExport(err error) bool { return errors.Is(err, ErrUnknownExport) }

// alive returns the connection's error, if it has failed or was closed.
func (c *Client) alive() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
