"""Twin of ``tosaint.kernels.image``, transcribed from RESIZE.tosac (integer resize_t = i16)."""
import numpy as np

__all__ = ["resize"]


def _idiv_floor(a, b):
    return a // b                    # Python floors, as idiv_floor does


def resize(x, oh, ow, scale_y_n, scale_y_d, scale_x_n, scale_x_d, offset_y, offset_x,
           bilinear):
    N, IH, IW, C = x.shape
    out = np.zeros((N, oh, ow, C), dtype=np.int64)
    unit_x, unit_y = scale_x_n, scale_y_n
    for n in range(N):
        for oy in range(oh):
            for ox in range(ow):
                y = oy * scale_y_d + offset_y
                xx = ox * scale_x_d + offset_x
                iy = _idiv_floor(y, scale_y_n)
                ix = _idiv_floor(xx, scale_x_n)
                dy = y - iy * scale_y_n
                dx = xx - ix * scale_x_n
                iy0 = max(iy, 0)
                iy1 = min(iy + 1, IH - 1)
                ix0 = max(ix, 0)
                ix1 = min(ix + 1, IW - 1)
                for c in range(C):
                    if bilinear:
                        v00 = int(x[n, iy0, ix0, c])
                        v01 = int(x[n, iy0, ix1, c])
                        v10 = int(x[n, iy1, ix0, c])
                        v11 = int(x[n, iy1, ix1, c])
                        acc = v00 * (unit_y - dy) * (unit_x - dx)
                        acc += v01 * (unit_y - dy) * dx
                        acc += v10 * dy * (unit_x - dx)
                        acc += v11 * dy * dx
                        out[n, oy, ox, c] = acc
                    else:
                        sy = iy1 if 2 * dy >= scale_y_n else iy0
                        sx = ix1 if 2 * dx >= scale_x_n else ix0
                        out[n, oy, ox, c] = x[n, sy, sx, c]
    return out
