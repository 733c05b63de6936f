"""Which form of a kernel runs: the one place for that rule (``impl="auto"``, the default).

Each Numba kernel (``tosaint.kernels.compiled``) costs something before its first call: in a
fresh process Numba's import (about 0.3 s) and loading the compiled code from the on-disk cache
(about 0.3 s more for a typical graph), or compiling it (0.3-1 s per specialisation) when the
cache is empty.  A graph run once from a fresh process, the way users meet tosaint (a golden
file, ``tosaint run``, one ExecuTorch test), pays that for kernels that then run for
microseconds.  So a *light* call, one whose NumPy form is estimated to cost little (the cost
model ``LOOP_NS``/``ELEMENT_NS``/``PY_ELEMENT_NS``, under ``CALL_NS``), runs the NumPy form: the spec
twin (``tosaint.kernels.spec``), which is bit-identical to the Numba kernel (the tests run both
on every operator and the whole conformance suite).  A heavy call runs the Numba kernel.

Once any plan runs a second time, or the light calls of the process add up to ``PROCESS_NS``,
the process is one that runs graphs repeatedly or at length, where Numba's start-up pays for
itself: ``promote()`` (called by ``Plan.run``) switches every later call to the Numba kernels.
Which form runs never changes a value, only the time it takes.  Importing this module imports no Numba; ``compiled()`` imports it when the
first heavy or promoted call needs it.

Same names and arguments as ``tosaint.kernels.compiled`` and ``tosaint.kernels.spec``.
"""
from . import spec
from .data_layout import concat, pad, reshape, reverse, slice_, tile, transpose
from .ewise_binary import table16, table16_lut
from .reduction import argmax, reduce_bool, reduce_minmax, reduce_sum

#: the cost model of the NumPy forms (measured on the spec twins: 20-40 us per Python-level loop
#: iteration of a tensor operator, 0.5-7 ns per multiply-accumulate or element, 1-2 us per
#: element where the form loops in Python per element)
LOOP_NS, ELEMENT_NS, PY_ELEMENT_NS = 30_000, 3, 2_000
#: a call is light when its NumPy form is estimated at most this long ...
CALL_NS = 30_000_000
#: ... and the light calls of the process so far at most this long (about what Numba's import
#: and cache loading cost a fresh process): past it, the process is promoted
PROCESS_NS = 300_000_000
_state = {"promoted": False, "spent": 0}

__all__ = ["apply_scale_16", "apply_scale_32", "argmax", "avg_pool2d", "concat", "conv2d",
           "conv2d_rescale", "conv3d", "conv_weights", "count_leading_zeros", "depthwise_conv2d",
           "depthwise_conv2d_rescale", "depthwise_weights", "finalize", "gather", "matmul",
           "max_pool2d", "pad", "reciprocal_scale", "reduce_bool", "reduce_minmax",
           "reduce_sum", "rescale", "rescale_exact", "reshape", "resize", "reverse", "scatter",
           "slice_", "table16", "table16_lut", "tile", "transpose", "transpose_conv2d"]


def promote():
    """From now on, in this process, every call runs its Numba kernel."""
    _state["promoted"] = True


def promoted():
    return _state["promoted"]


def compiled():
    """The Numba side (imported on first use)."""
    k = _state.get("compiled")
    if k is None:
        from . import compiled as k
        _state["compiled"] = k
    return k


def _light(loops, elements, py_elements=0):
    """Whether a call runs its NumPy form: ``loops`` Python-level iterations, ``elements``
    elements or multiply-accumulates, ``py_elements`` elements handled one by one in Python."""
    if _state["promoted"]:
        return False
    cost = loops * LOOP_NS + elements * ELEMENT_NS + py_elements * PY_ELEMENT_NS
    if cost > CALL_NS:
        return False
    _state["spent"] += cost          # unlocked: a lost update only shifts the promotion
    if _state["spent"] > PROCESS_NS:
        promote()
    return True


def _prod(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


class _Weights:
    """A convolution's weights, prepared for each form on its first use (both forms see the
    same arguments; preparing twice from two threads is harmless)."""
    __slots__ = ("args", "make_light", "make_heavy", "_light", "_heavy")

    def __init__(self, args, make_light, make_heavy):
        self.args, self.make_light, self.make_heavy = args, make_light, make_heavy
        self._light = self._heavy = None

    def light(self):
        if self._light is None:
            self._light = self.make_light(*self.args)
        return self._light

    def heavy(self):
        if self._heavy is None:
            self._heavy = self.make_heavy(*self.args)
        return self._heavy


# ---- Type Conversion ------------------------------------------------------------------------
def rescale(x, in_mask, in_zp, out_zp, multiplier, shift, pow2, mode, qmin, qmax, out):
    k = spec if _light(1, 0, x.size) else compiled()
    return k.rescale(x, in_mask, in_zp, out_zp, multiplier, shift, pow2, mode, qmin, qmax, out)


def rescale_exact(x, in_zp, out_zp, multiplier, rnd_pos, rnd_neg, shift, half, qmin, qmax,
                  out):
    k = spec if _light(1, 10 * x.size) else compiled()      # ~10 passes over x
    return k.rescale_exact(x, in_zp, out_zp, multiplier, rnd_pos, rnd_neg, shift, half, qmin,
                           qmax, out)


# ---- Tensor Operators -----------------------------------------------------------------------
def conv_weights(weight, weight_zp, op, x_absmax):
    return _Weights((weight, weight_zp, op, x_absmax), spec.conv_weights,
                    lambda *a: compiled().conv_weights(*a))


def depthwise_weights(weight, weight_zp, x_absmax):
    return _Weights((weight, weight_zp, x_absmax), spec.depthwise_weights,
                    lambda *a: compiled().depthwise_weights(*a))


def _conv_light(input, weights, out_shape, rows):
    """rows: the NumPy form's loop count per tap (output rows, N*OH or N*OD*OH)."""
    if _state["promoted"]:
        return False
    w = weights.args[0].shape
    taps = _prod(w[1:-1]) if len(w) > 1 else 1
    return _light(rows * taps, _prod(out_shape) * taps * int(input.shape[-1]))


def conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    if _conv_light(input, weights, out_shape, out_shape[0] * out_shape[1]):
        return spec.conv2d(input, weights.light(), bias, input_zp, pad, stride, dilation,
                           out_shape, out48)
    return compiled().conv2d(input, weights.heavy(), bias, input_zp, pad, stride, dilation,
                             out_shape, out48)


def conv2d_rescale(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48,
                   rescale, out_dtype):
    if _conv_light(input, weights, out_shape, out_shape[0] * out_shape[1]):
        return spec.conv2d_rescale(input, weights.light(), bias, input_zp, pad, stride,
                                   dilation, out_shape, out48, rescale, out_dtype)
    return compiled().conv2d_rescale(input, weights.heavy(), bias, input_zp, pad, stride,
                                     dilation, out_shape, out48, rescale, out_dtype)


def conv3d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    if _conv_light(input, weights, out_shape, out_shape[0] * out_shape[1] * out_shape[2]):
        return spec.conv3d(input, weights.light(), bias, input_zp, pad, stride, dilation,
                           out_shape, out48)
    return compiled().conv3d(input, weights.heavy(), bias, input_zp, pad, stride, dilation,
                             out_shape, out48)


def transpose_conv2d(input, weights, bias, input_zp, out_pad, stride, out_shape, out48):
    if _conv_light(input, weights, out_shape, out_shape[0] * out_shape[1]):
        return spec.transpose_conv2d(input, weights.light(), bias, input_zp, out_pad, stride,
                                     out_shape, out48)
    return compiled().transpose_conv2d(input, weights.heavy(), bias, input_zp, out_pad, stride,
                                       out_shape, out48)


def _depthwise_light(input, weights, out_shape):
    if _state["promoted"]:
        return False
    KH, KW, _, M = weights.args[0].shape
    return _light(out_shape[0] * out_shape[1] * KH * KW, _prod(out_shape) * KH * KW)


def depthwise_conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    if _depthwise_light(input, weights, out_shape):
        return spec.depthwise_conv2d(input, weights.light(), bias, input_zp, pad, stride,
                                     dilation, out_shape, out48)
    return compiled().depthwise_conv2d(input, weights.heavy(), bias, input_zp, pad, stride,
                                       dilation, out_shape, out48)


def depthwise_conv2d_rescale(input, weights, bias, input_zp, pad, stride, dilation, out_shape,
                             out48, rescale, out_dtype):
    if _depthwise_light(input, weights, out_shape):
        return spec.depthwise_conv2d_rescale(input, weights.light(), bias, input_zp, pad,
                                             stride, dilation, out_shape, out48, rescale,
                                             out_dtype)
    return compiled().depthwise_conv2d_rescale(input, weights.heavy(), bias, input_zp, pad,
                                               stride, dilation, out_shape, out48, rescale,
                                               out_dtype)


def matmul(A, B, A_zp, B_zp, out48):
    N, H, C = A.shape
    k = spec if _light(N, N * H * C * B.shape[2]) else compiled()
    return k.matmul(A, B, A_zp, B_zp, out48)


def finalize(acc, bias, out48):
    k = spec if _light(1, 8 * acc.size) else compiled()     # ~8 passes over acc
    return k.finalize(acc, bias, out48)


# ---- pooling, image, scatter/gather (the NumPy forms loop per tap or per element) ---------
def avg_pool2d(x, out, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left, input_zp,
               output_zp, lo, hi, check_acc):
    # the NumPy form also loops once per distinct (sum, count) pair: at most one per output
    k = spec if _light(kernel_y * kernel_x, out.size * kernel_y * kernel_x, out.size) \
        else compiled()
    return k.avg_pool2d(x, out, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left,
                        input_zp, output_zp, lo, hi, check_acc)


def max_pool2d(x, out, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left):
    k = spec if _light(kernel_y * kernel_x, out.size * kernel_y * kernel_x) else compiled()
    return k.max_pool2d(x, out, kernel_y, kernel_x, stride_y, stride_x, pad_top, pad_left)


def resize(x, oh, ow, scale_y_n, scale_y_d, scale_x_n, scale_x_d, offset_y, offset_x,
           bilinear):
    n = x.shape[0] * oh * ow
    k = spec if _light(1, 0, n * x.shape[3]) else compiled()
    return k.resize(x, oh, ow, scale_y_n, scale_y_d, scale_x_n, scale_x_d, offset_y, offset_x,
                    bilinear)


def gather(values, indices):
    k = spec if _light(1, 0, indices.size * values.shape[-1]) else compiled()
    return k.gather(values, indices)


def scatter(values_in, indices, input):
    n = (values_in.shape[0] * values_in.shape[1] + indices.size) * values_in.shape[-1]
    k = spec if _light(1, 0, n) else compiled()
    return k.scatter(values_in, indices, input)


# ---- the scalar helpers of the spec's "Scale" section: always the Numba versions ------------
def apply_scale_32(value, multiplier, shift, double_round):
    return compiled().apply_scale_32(value, multiplier, shift, double_round)


def apply_scale_16(value, multiplier, shift):
    return compiled().apply_scale_16(value, multiplier, shift)


def count_leading_zeros(a):
    return compiled().count_leading_zeros(a)


def reciprocal_scale(count):
    return compiled().reciprocal_scale(count)
