"""RESIZE (spec chapter "Image Operators"), integer modes NEAREST and BILINEAR.

scale = [scale_y_n, scale_y_d, scale_x_n, scale_x_d], offset = [offset_y, offset_x] and
border = [border_y, border_x] are shape_t compile-time constants.  The integer pseudocode is
followed exactly: the bilinear result is the unnormalised sum weighted by
(scale_n - d) and d, so it carries a factor scale_y_n * scale_x_n (a RESCALE follows in a real
network); NEAREST rounds half up (2*d >= scale_n picks the next input row/column).
"""
import numpy as np

from ..dtypes import STORAGE
from ..levels import MAX_SCALE
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op, ResizeMode
from .data_layout import check_rank, shape_operand

_SIGS = {(T.INT8, T.SHAPE, T.SHAPE, T.SHAPE, T.INT32): "PRO-INT",      # bilinear
         (T.INT8, T.SHAPE, T.SHAPE, T.SHAPE, T.INT8): "PRO-INT",       # nearest
         (T.INT16, T.SHAPE, T.SHAPE, T.SHAPE, T.INT48): "EXT-INT16",   # bilinear
         (T.INT16, T.SHAPE, T.SHAPE, T.SHAPE, T.INT16): "EXT-INT16"}   # nearest
_BILINEAR_OUT = {T.INT8: T.INT32, T.INT16: T.INT48}


def _idiv_check(node, num, den, what):
    if num % den != 0:
        node.error(f"{what}: {num} is not divisible by {den} (idiv_check)")
    return num // den


@register(Op.RESIZE, _SIGS, operands=("input", "scale", "offset", "border"))
def resize(node):
    x, out = node.inputs[0], node.outputs[0]
    check_rank(node, x, 4, 4, "input")
    check_rank(node, out, 4, 4, "output")
    mode = node.attrs.get("mode")
    if mode not in (ResizeMode.NEAREST, ResizeMode.BILINEAR):
        node.error(f"mode {mode!r} is neither NEAREST nor BILINEAR")
    bilinear = mode == ResizeMode.BILINEAR
    in_t, out_t = T(x.dtype), T(out.dtype)
    want = _BILINEAR_OUT[in_t] if bilinear else in_t
    if out_t != want:
        node.error(f"{ResizeMode(mode).name} with {in_t.name} input needs "
                   f"{want.name} output, not {out_t.name}")
    scale = shape_operand(node, 1, "scale")
    offset = shape_operand(node, 2, "offset")
    border = shape_operand(node, 3, "border")
    if len(scale) != 4:
        node.error(f"scale has {len(scale)} values; it needs 4")
    if len(offset) != 2:
        node.error(f"offset has {len(offset)} values; it needs 2")
    if len(border) != 2:
        node.error(f"border has {len(border)} values; it needs 2")
    scale_y_n, scale_y_d, scale_x_n, scale_x_d = scale
    offset_y, offset_x = offset
    border_y, border_x = border
    N, IH, IW, C = x.shape
    ON, OH, OW, OC = out.shape
    if ON != N:
        node.error(f"output batch {ON} != input batch {N}")
    if OC != C:
        node.error(f"output channels {OC} != input channels {C}")
    if max(OH, OW, IH, IW) >= 16384:
        node.error(f"max(OH,OW,IH,IW) = max({OH},{OW},{IH},{IW}) >= 16384")
    if scale_y_n <= 0 or scale_y_d <= 0 or scale_x_n <= 0 or scale_x_d <= 0:
        node.error(f"scale {scale} has a value <= 0")
    if scale_y_n > (1 << 11) or scale_x_n > (1 << 11):
        node.error(f"scale_y_n {scale_y_n} or scale_x_n {scale_x_n} > 2^11 = 2048")
    if scale_y_d >= 16 * scale_y_n or scale_x_d >= 16 * scale_x_n:
        node.error(f"scale_y_d {scale_y_d} >= 16*scale_y_n {16 * scale_y_n} or scale_x_d "
                   f"{scale_x_d} >= 16*scale_x_n {16 * scale_x_n} (downscale below 1/16)")
    if offset_y < -scale_y_n or offset_y >= 16 * scale_y_n:
        node.error(f"offset_y {offset_y} outside [-scale_y_n, 16*scale_y_n) = "
                   f"[{-scale_y_n}, {16 * scale_y_n})")
    if offset_x < -scale_x_n or offset_x >= 16 * scale_x_n:
        node.error(f"offset_x {offset_x} outside [-scale_x_n, 16*scale_x_n) = "
                   f"[{-scale_x_n}, {16 * scale_x_n})")
    if border_y < -16 * scale_y_n or border_y >= scale_y_n:
        node.error(f"border_y {border_y} outside [-16*scale_y_n, scale_y_n) = "
                   f"[{-16 * scale_y_n}, {scale_y_n})")
    if border_x < -16 * scale_x_n or border_x >= scale_x_n:
        node.error(f"border_x {border_x} outside [-16*scale_x_n, scale_x_n) = "
                   f"[{-16 * scale_x_n}, {scale_x_n})")
    node.level_check(scale_y_n // scale_y_d <= MAX_SCALE,
                     f"scale_y_n/scale_y_d = {scale_y_n}/{scale_y_d} > MAX_SCALE {MAX_SCALE}")
    node.level_check(scale_x_n // scale_x_d <= MAX_SCALE,
                     f"scale_x_n/scale_x_d = {scale_x_n}/{scale_x_d} > MAX_SCALE {MAX_SCALE}")
    oh = _idiv_check(node, (IH - 1) * scale_y_n - offset_y + border_y, scale_y_d,
                     "(IH-1)*scale_y_n-offset_y+border_y") + 1
    ow = _idiv_check(node, (IW - 1) * scale_x_n - offset_x + border_x, scale_x_d,
                     "(IW-1)*scale_x_n-offset_x+border_x") + 1
    if OH != oh:
        node.error(f"output height {OH} != ((IH-1)*scale_y_n-offset_y+border_y)/"
                   f"scale_y_d+1 = (({IH}-1)*{scale_y_n}-{offset_y}+{border_y})/{scale_y_d}+1 "
                   f"= {oh}")
    if OW != ow:
        node.error(f"output width {OW} != ((IW-1)*scale_x_n-offset_x+border_x)/"
                   f"scale_x_d+1 = (({IW}-1)*{scale_x_n}-{offset_x}+{border_x})/{scale_x_d}+1 "
                   f"= {ow}")
    k = node.k
    store = STORAGE[out_t]
    args = (OH, OW, scale_y_n, scale_y_d, scale_x_n, scale_x_d, offset_y, offset_x, bilinear)

    def run(v, _s, _o, _b):
        return k.resize(v.astype(np.int32), *args).astype(store)
    return run
