"""NumPy twins of ``tosaint.kernels.conv_dense``, ``conv_depthwise``, ``matmul`` and
``_epilogue.finalize`` (spec chapter "Tensor Operators"): CONV2D, CONV3D, DEPTHWISE_CONV2D,
TRANSPOSE_CONV2D and MATMUL transcribed from the spec pseudocode (``pseudocode/operators/
<OP>.tosac``), accumulating exactly in int64.

The loops are the spec's ``for_each`` loops in the spec's order; only the innermost loops over
output x and the channels are written as NumPy array expressions so that the tests finish.
Padding taps are skipped (they contribute value 0, as in the spec).

After the accumulation both sides apply the reference model's behaviour where the spec says
"unpredictable" (tosa-facts.md 2.4): an int48 output is ``bias + acc`` saturated to
[-2**47, 2**47-1]; an int32 output is computed in wrapping int32 arithmetic,
``wrap32(wrap32(acc) + bias)``.  The count returned next to the output is the number of output
values for which a spec REQUIRE failed (accumulator or bias add out of range).
"""
import numpy as np

from .._int import I32_MAX, I32_MIN, I48_MAX, I48_MIN, wrap32

__all__ = ["conv_weights", "conv2d", "conv2d_rescale", "conv3d", "transpose_conv2d",
           "depthwise_weights",
           "depthwise_conv2d", "depthwise_conv2d_rescale", "matmul", "finalize"]

def finalize(acc, bias, out48):
    """``out = acc + bias[oc]`` with the reference model's int48 saturation or int32 wrap.

    ``acc``: int64 array [..., OC]; ``bias``: int64 [BC] with BC == 1 or OC.
    Returns (out as int64 (int48) or int32, number of values where a REQUIRE failed).
    """
    acc = np.asarray(acc, np.int64)
    bias = np.asarray(bias, np.int64)
    if out48:
        # the int48 apply_add_s of the spec; int64 holds every sum of two int48 values
        total = acc + bias
        bad = (acc < I48_MIN) | (acc > I48_MAX) | (total < I48_MIN) | (total > I48_MAX)
        return np.clip(total, I48_MIN, I48_MAX).astype(np.int64), int(bad.sum())
    acc32 = wrap32(acc)
    total = acc32 + bias
    bad = (acc < I32_MIN) | (acc > I32_MAX) | (total < I32_MIN) | (total > I32_MAX)
    return wrap32(total).astype(np.int32), int(bad.sum())


def conv_weights(weight, weight_zp, op, x_absmax):
    """The twin keeps the weights as they are: (weight as int64, weight_zp)."""
    return np.asarray(weight, np.int64), int(weight_zp)


def conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    """CONV2D.tosac.  input [N,IH,IW,IC], weight [OC,KH,KW,IC]."""
    weight, weight_zp = weights
    N, IH, IW, IC = input.shape
    OC, KH, KW, _ = weight.shape
    _, OH, OW, _ = out_shape
    pad_top, _, pad_left, _ = pad
    stride_y, stride_x = stride
    dilation_y, dilation_x = dilation
    x_in = input.astype(np.int64) - int(input_zp)            # apply_sub_s(value, input_zp)
    w = weight - weight_zp                                   # apply_sub_s(weight, weight_zp)
    acc = np.zeros((N, OH, OW, OC), np.int64)
    ox = np.arange(OW)
    for n in range(N):
        for oy in range(OH):
            iy = oy * stride_y - pad_top
            ix = ox * stride_x - pad_left                    # all ox at once
            for ky in range(KH):
                y = iy + ky * dilation_y
                if not 0 <= y < IH:
                    continue
                for kx in range(KW):
                    x = ix + kx * dilation_x
                    ok = (0 <= x) & (x < IW)
                    # acc[ox, oc] += sum over ic of value[ox, ic] * weight_el[oc, ic]
                    acc[n, oy, ok] += x_in[n, y, x[ok]] @ w[:, ky, kx, :].T
    return finalize(acc, bias, out48)


def conv3d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    """CONV3D.tosac.  input [N,ID,IH,IW,IC], weight [OC,KD,KH,KW,IC]."""
    weight, weight_zp = weights
    N, ID, IH, IW, IC = input.shape
    OC, KD, KH, KW, _ = weight.shape
    _, OD, OH, OW, _ = out_shape
    pad_d0, _, pad_top, _, pad_left, _ = pad
    stride_d, stride_y, stride_x = stride
    dilation_d, dilation_y, dilation_x = dilation
    x_in = input.astype(np.int64) - int(input_zp)
    w = weight - weight_zp
    acc = np.zeros((N, OD, OH, OW, OC), np.int64)
    ox = np.arange(OW)
    for n in range(N):
        for od in range(OD):
            id_ = od * stride_d - pad_d0
            for oy in range(OH):
                iy = oy * stride_y - pad_top
                ix = ox * stride_x - pad_left
                for kd in range(KD):
                    d = id_ + kd * dilation_d
                    if not 0 <= d < ID:
                        continue
                    for ky in range(KH):
                        y = iy + ky * dilation_y
                        if not 0 <= y < IH:
                            continue
                        for kx in range(KW):
                            x = ix + kx * dilation_x
                            ok = (0 <= x) & (x < IW)
                            acc[n, od, oy, ok] += x_in[n, d, y, x[ok]] @ w[:, kd, ky, kx, :].T
    return finalize(acc, bias, out48)


def transpose_conv2d(input, weights, bias, input_zp, out_pad, stride, out_shape, out48):
    """TRANSPOSE_CONV2D.tosac.  input [N,IH,IW,IC], weight [OC,KH,KW,IC]."""
    weight, weight_zp = weights
    N, IH, IW, IC = input.shape
    OC, KH, KW, _ = weight.shape
    _, OH, OW, _ = out_shape
    out_pad_top, _, out_pad_left, _ = out_pad
    stride_y, stride_x = stride
    x_in = input.astype(np.int64) - int(input_zp)
    w = weight - weight_zp
    acc = np.zeros((N, OH, OW, OC), np.int64)
    ox = np.arange(OW)
    for n in range(N):
        for oy in range(OH):
            iy = oy - out_pad_top
            ix = ox - out_pad_left
            # the ky for which the spec's condition on y holds (found at once, as a vector)
            y_all = iy - np.arange(KH)
            y_ok = (0 <= y_all) & (y_all < IH * stride_y) & (y_all % stride_y == 0)
            for ky in np.nonzero(y_ok)[0]:
                y = iy - ky
                for kx in range(KW):
                    x = ix - kx
                    ok = (0 <= x) & (x < IW * stride_x) & (x % stride_x == 0)
                    acc[n, oy, ok] += (x_in[n, y // stride_y, x[ok] // stride_x]
                                       @ w[:, ky, kx, :].T)
    return finalize(acc, bias, out48)


def depthwise_weights(weight, weight_zp, x_absmax):
    return np.asarray(weight, np.int64), int(weight_zp)


def depthwise_conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48):
    """DEPTHWISE_CONV2D.tosac.  input [N,IH,IW,C], weight [KH,KW,C,M], output channel c*M+m."""
    weight, weight_zp = weights
    N, IH, IW, C = input.shape
    KH, KW, _, M = weight.shape
    _, OH, OW, _ = out_shape
    pad_top, _, pad_left, _ = pad
    stride_y, stride_x = stride
    dilation_y, dilation_x = dilation
    x_in = input.astype(np.int64) - int(input_zp)
    w = weight - weight_zp
    acc = np.zeros((N, OH, OW, C, M), np.int64)
    ox = np.arange(OW)
    for n in range(N):
        for oy in range(OH):
            iy = oy * stride_y - pad_top
            ix = ox * stride_x - pad_left
            for ky in range(KH):
                y = iy + ky * dilation_y
                if not 0 <= y < IH:
                    continue
                for kx in range(KW):
                    x = ix + kx * dilation_x
                    ok = (0 <= x) & (x < IW)
                    # value[ox, c] * weight_el[c, m] for every (c, m)
                    acc[n, oy, ok] += x_in[n, y, x[ok]][:, :, None] * w[ky, kx][None]
    return finalize(acc.reshape(N, OH, OW, C * M), bias, out48)


def matmul(A, B, A_zp, B_zp, out48):
    """MATMUL.tosac: out[n,h,w] = sum_c (A[n,h,c] - A_zp) * (B[n,c,w] - B_zp)."""
    N, H, C = A.shape
    W = B.shape[2]
    acc = np.zeros((N, H, W), np.int64)
    for n in range(N):
        value1 = A[n].astype(np.int64) - int(A_zp)
        value2 = B[n].astype(np.int64) - int(B_zp)
        acc[n] = value1 @ value2                            # exact: int64 sums of products
    return finalize(acc, np.zeros(1, np.int64), out48)


def _then_rescale(acc, n, out_shape, rescale, out_dtype):
    from .type_conversion import rescale_exact
    m, rp, rn, sh, half, _lo, _hi, ozp, qmin, qmax = rescale
    out = np.empty(out_shape, out_dtype)
    cols = out_shape[-1]
    n += rescale_exact(acc.reshape(-1, cols), 0, ozp, m, rp, rn, sh, half, qmin, qmax,
                       out.reshape(-1, cols))
    return out, int(n)


def conv2d_rescale(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48,
                   rescale, out_dtype):
    """Twin of the fused kernel: CONV2D.tosac, then RESCALE as type_conversion.rescale_exact;
    the count is the sum of both ops' flags."""
    acc, n = conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape, out48)
    return _then_rescale(acc, n, out_shape, rescale, out_dtype)


def depthwise_conv2d_rescale(input, weights, bias, input_zp, pad, stride, dilation, out_shape,
                             out48, rescale, out_dtype):
    """Twin of the fused kernel: DEPTHWISE_CONV2D.tosac, then RESCALE as
    type_conversion.rescale_exact; the count is the sum of both ops' flags."""
    acc, n = depthwise_conv2d(input, weights, bias, input_zp, pad, stride, dilation, out_shape,
                              out48)
    return _then_rescale(acc, n, out_shape, rescale, out_dtype)
