"""RESIZE (spec chapter "Image Operators") as a Numba kernel, integer path only; output rows
are spread over the worker threads (``_threads.run_parallel``).

The input is widened to int32 and the output computed in int64 (one specialisation for
i8 and i16 inputs); the op layer casts to i8/i16/i32/i48 storage.  The bilinear accumulator of
the spec is exact in int64: the weights of one output sum to scale_y_n * scale_x_n <= 2**22.
"""
import numpy as np

from ._jit import jit
from ._threads import run_parallel

__all__ = ["resize"]

#: output values per work block: smaller resizes run in one call, on the calling thread
_BLOCK = 1 << 16


def resize(x, oh, ow, scale_y_n, scale_y_d, scale_x_n, scale_x_d, offset_y, offset_x,
           bilinear):
    out = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=np.int64)
    step = max(1, min(oh, _BLOCK // max(1, out.size // max(oh, 1))))
    args = (x, out, scale_y_n, scale_y_d, scale_x_n, scale_x_d, offset_y, offset_x, bilinear)

    def work(tid, blocks):
        for b in blocks:
            _resize_rows(b * step, min(oh, (b + 1) * step), *args)
        return 0

    run_parallel(-(-oh // step), work)
    return out


@jit
def _resize_rows(oy0, oy1, x, out, scale_y_n, scale_y_d, scale_x_n, scale_x_d, offset_y,
                 offset_x, bilinear):
    """Output rows oy0 .. oy1-1 (every batch) of RESIZE.tosac."""
    n_, ih, iw, c_ = x.shape
    ow = out.shape[2]
    for oy in range(oy0, oy1):
        y = oy * scale_y_d + offset_y
        iy = y // scale_y_n                  # idiv_floor
        dy = y - iy * scale_y_n
        iy0 = max(iy, 0)
        iy1 = min(iy + 1, ih - 1)
        for n in range(n_):
            for ox in range(ow):
                x_ = ox * scale_x_d + offset_x
                ix = x_ // scale_x_n
                dx = x_ - ix * scale_x_n
                ix0 = max(ix, 0)
                ix1 = min(ix + 1, iw - 1)
                if bilinear:
                    w00 = np.int64(scale_y_n - dy) * (scale_x_n - dx)
                    w01 = np.int64(scale_y_n - dy) * dx
                    w10 = np.int64(dy) * (scale_x_n - dx)
                    w11 = np.int64(dy) * dx
                    for c in range(c_):
                        out[n, oy, ox, c] = (x[n, iy0, ix0, c] * w00 + x[n, iy0, ix1, c] * w01
                                             + x[n, iy1, ix0, c] * w10
                                             + x[n, iy1, ix1, c] * w11)
                else:
                    sy = iy1 if 2 * dy >= scale_y_n else iy0
                    sx = ix1 if 2 * dx >= scale_x_n else ix0
                    for c in range(c_):
                        out[n, oy, ox, c] = x[n, sy, sx, c]
