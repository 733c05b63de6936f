"""RESIZE: goldens, the reference model (python binding; its CLI for the int16 -> int48
bilinear case, which the binding cannot return), twin agreement and every ERROR_IF."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tosaint
from tosaint import DType, Op
from tosaint.builder import GraphBuilder
from tosaint.errors import ErrorIfViolation, LevelLimitError
from tosaint.kernels import namespace
from tosaint.schema.definition import ResizeMode

from .helpers import check

IMPLS = ["numba", "spec"]
N_, B_ = ResizeMode.NEAREST, ResizeMode.BILINEAR
OUT = {(DType.INT8, N_): DType.INT8, (DType.INT8, B_): DType.INT32,
       (DType.INT16, N_): DType.INT16, (DType.INT16, B_): DType.INT48}


def resize_graph(shape, dtype, scale, offset, border, mode, out_shape=None):
    b = GraphBuilder()
    x = b.input(shape, dtype, name="x")
    if out_shape is None:
        y = b.resize(x, scale, offset, border, mode)
    else:
        y = b.op(Op.RESIZE, [x, b.const_shape(scale), b.const_shape(offset),
                             b.const_shape(border)], out_shape, OUT[(dtype, mode)],
                 dict(mode=mode), name="y")
    b.output(y)
    return b.build()


@pytest.mark.parametrize("impl", IMPLS)
def test_goldens(impl):
    x = np.array([0, 10, 20], np.int8).reshape(1, 1, 3, 1)
    # 2x upscale along W, offset 0, border 0 -> OW = (3-1)*2/1 + 1 = 5
    g = resize_graph((1, 1, 3, 1), DType.INT8, (1, 1, 2, 1), (0, 0), (0, 0), B_)
    out = tosaint.run_tosa(g, [x], impl=impl)[g.outputs[0]]
    # unnormalised: weights sum to scale_y_n*scale_x_n = 2; the half-way points average
    check(out, np.array([0, 10, 20, 30, 40], np.int32).reshape(1, 1, 5, 1))
    g = resize_graph((1, 1, 3, 1), DType.INT8, (1, 1, 2, 1), (0, 0), (0, 0), N_)
    out = tosaint.run_tosa(g, [x], impl=impl)[g.outputs[0]]
    # nearest rounds half up: position 0.5 takes input 1
    check(out, np.array([0, 10, 10, 20, 20], np.int8).reshape(1, 1, 5, 1))


CASES = [  # scale (y_n, y_d, x_n, x_d), offset, border, input shape
    ((2, 1, 2, 1), (0, 0), (0, 0), (1, 3, 4, 2)),
    ((4, 1, 4, 1), (-1, -1), (1, 1), (2, 3, 3, 3)),
    ((3, 2, 5, 3), (1, 2), (0, -1), (1, 5, 6, 2)),
    ((1, 2, 1, 3), (0, 0), (0, -2), (1, 7, 8, 1)),
    ((16, 3, 11, 4), (-5, 7), (-3, 2), (1, 4, 5, 2)),
    ((2048, 1024, 7, 7), (0, 0), (0, 0), (1, 2, 3, 1)),
]


def _fit_border(scale, offset, border, shape):
    """``border`` moved down (within its legal range) so that the output size is an integer."""
    ih, iw = shape[1], shape[2]
    by = border[0] - ((ih - 1) * scale[0] - offset[0] + border[0]) % scale[1]
    bx = border[1] - ((iw - 1) * scale[2] - offset[1] + border[1]) % scale[3]
    return by, bx


@pytest.mark.oracle
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype, mode", [(DType.INT8, N_), (DType.INT8, B_), (DType.INT16, N_),
                                         (DType.INT16, B_)], ids=["i8-N", "i8-B", "i16-N",
                                                                  "i16-B-i48"])
def test_against_reference_model(impl, dtype, mode):
    pytest.importorskip("tosa_reference_model")
    from tosaint.oracle import reference_run
    rng = np.random.default_rng(3)
    info = np.iinfo(np.int8 if dtype == DType.INT8 else np.int16)
    for scale, offset, border, shape in CASES:
        border = _fit_border(scale, offset, border, shape)
        g = resize_graph(shape, dtype, scale, offset, border, mode)
        x = rng.integers(info.min, info.max, shape, endpoint=True).astype(info.dtype)
        status, want = reference_run(g, [x])     # int48 output: the CLI
        assert status == "TOSA_VALID", (scale, offset, border, shape)
        check(tosaint.run_tosa(g, [x], impl=impl)[g.outputs[0]], want[g.outputs[0]])


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_twins_agree(data):
    y_n = data.draw(st.integers(1, 12))
    x_n = data.draw(st.integers(1, 12))
    y_d = data.draw(st.integers(1, min(24, 16 * y_n - 1)))
    x_d = data.draw(st.integers(1, min(24, 16 * x_n - 1)))
    ih, iw = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    off_y = data.draw(st.integers(-y_n, min(16 * y_n - 1, (ih - 1) * y_n)))
    off_x = data.draw(st.integers(-x_n, min(16 * x_n - 1, (iw - 1) * x_n)))
    bor_y = data.draw(st.integers(-min(16 * y_n, (ih - 1) * y_n - off_y), y_n - 1))
    bor_x = data.draw(st.integers(-min(16 * x_n, (iw - 1) * x_n - off_x), x_n - 1))
    num_y, num_x = (ih - 1) * y_n - off_y + bor_y, (iw - 1) * x_n - off_x + bor_x
    assume(num_y >= 0 and num_x >= 0)   # an ERROR_IF-free geometry (border fixes divisibility)
    oh, ow = num_y // y_d + 1, num_x // x_d + 1
    x = np.random.default_rng(data.draw(st.integers(0, 99))).integers(
        -32768, 32767, (1, ih, iw, 2)).astype(np.int32)
    bilinear = data.draw(st.booleans())
    args = (oh, ow, y_n, y_d, x_n, x_d, off_y, off_x, bilinear)
    check(namespace("numba").resize(x, *args), namespace("spec").resize(x, *args))


@pytest.mark.parametrize("scale, offset, border, shape, out, match", [
    ((2049, 1, 2, 1), (0, 0), (0, 0), (1, 2, 2, 1), (1, 2049, 3, 1), "scale_y_n 2049 .* > 2\\^11"),
    ((2, 0, 2, 1), (0, 0), (0, 0), (1, 2, 2, 1), (1, 3, 3, 1), "has a value <= 0"),
    ((1, 16, 2, 1), (0, 0), (0, 0), (1, 2, 2, 1), (1, 1, 3, 1), "scale_y_d 16 >= 16\\*scale_y_n"),
    ((2, 1, 2, 1), (-3, 0), (0, 0), (1, 2, 2, 1), (1, 6, 3, 1), "offset_y -3 outside"),
    ((2, 1, 2, 1), (0, 32), (0, 0), (1, 2, 2, 1), (1, 3, 1, 1), "offset_x 32 outside"),
    ((2, 1, 2, 1), (0, 0), (2, 0), (1, 2, 2, 1), (1, 5, 3, 1), "border_y 2 outside"),
    ((2, 1, 2, 1), (0, 0), (0, -33), (1, 2, 2, 1), (1, 3, 1, 1), "border_x -33 outside"),
    ((2, 1, 2, 1), (0, 0), (0, 0), (1, 2, 2, 1), (1, 4, 3, 1), "output height 4 != .* = 3"),
    ((2, 3, 2, 1), (0, 0), (0, 0), (1, 2, 2, 1), (1, 1, 3, 1), "not divisible by 3"),
    ((1, 1, 1, 1), (0, 0), (0, 0), (1, 16384, 1, 1), (1, 16384, 1, 1), ">= 16384"),
    ((2, 1, 2, 1), (0, 0), (0, 0), (1, 2, 2, 1), (2, 3, 3, 1), "output batch 2 != input"),
    ((2, 1, 2, 1), (0, 0), (0, 0), (1, 2, 2, 1), (1, 3, 3, 2), "output channels 2 != input"),
])
def test_error_if(scale, offset, border, shape, out, match):
    g = resize_graph(shape, DType.INT8, scale, offset, border, N_, out_shape=out)
    with pytest.raises(ErrorIfViolation, match=match):
        tosaint.prepare(g)


def test_wrong_output_type_and_level():
    b = GraphBuilder()
    x = b.input((1, 2, 2, 1), DType.INT16, name="x")
    b.output(b.resize(x, (2, 1, 2, 1), (0, 0), (0, 0), B_, out_dtype=DType.INT32))
    with pytest.raises(ErrorIfViolation, match="type signature"):
        tosaint.prepare(b.build())
    # MAX_SCALE 256 for level 8K: 300/1 is legal without a level
    g = resize_graph((1, 2, 2, 1), DType.INT8, (300, 1, 1, 1), (0, 0), (0, 0), N_)
    x = np.ones((1, 2, 2, 1), np.int8)
    assert tosaint.run_tosa(g, [x])[g.outputs[0]].shape == (1, 301, 2, 1)
    with pytest.raises(LevelLimitError, match="MAX_SCALE 256"):
        tosaint.run_tosa(g, [x], level="8K")
