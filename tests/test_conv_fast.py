"""The fast paths of the convolution kernels against the spec twins: the one-pass 3x3 depthwise
taps (with the input zero point folded into a per-channel term), and the fused RESCALE
epilogue with and without its per-value REQUIRE counting (skipped when a bound on the sums
shows nothing can be flagged)."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import check


def _rescale_args(rng, oc, out48, narrow):
    """A fused RESCALE's tuple as the op layer builds it (multiplier, rnd_pos, rnd_neg, shift,
    half, lo, hi, out_zp, qmin, qmax): scale16 for int48 sums, scale32 single round for int32
    ones; ``narrow``: a shift so small that many sums fail a REQUIRE (so the kernel counts)."""
    from tosaint.ops.type_conversion import no_require_range
    m = rng.integers(1 << 13, 1 << 15, oc) if out48 else rng.integers(1 << 29, 1 << 31, oc)
    sh = np.full(oc, 2 if narrow else (36 if out48 else 40), np.int64)
    rp = np.left_shift(1, sh - 1)
    half = np.full(oc, 1 << 62, np.int64) if out48 else rp
    lo, hi = no_require_range(m, sh, rp, rp, half, 0, 48 if out48 else 32)
    return (m.astype(np.int64), rp, rp.copy(), sh, half, np.array(lo, np.int64),
            np.array(hi, np.int64), 0, -32768, 32767)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 2), st.integers(3, 12), st.integers(3, 12), st.integers(1, 20),
       st.integers(1, 2), st.integers(1, 2), st.tuples(*[st.integers(0, 2)] * 4),
       st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_depthwise_3x3_one_pass_matches_twin(n, ih, iw, c, s, d, pads, i16, narrow, seed):
    from tosaint.kernels import compiled as K
    from tosaint.kernels.spec import tensor_ops as S
    oh = (ih - 1 + pads[0] + pads[1] - 2 * d) // s + 1
    ow = (iw - 1 + pads[2] + pads[3] - 2 * d) // s + 1
    if oh < 1 or ow < 1:
        return
    rng = np.random.default_rng(seed)
    if i16:
        x = rng.integers(-32768, 32768, (n, ih, iw, c)).astype(np.int16)
        izp, xa = 0, 32768
    else:
        x = rng.integers(-128, 128, (n, ih, iw, c)).astype(np.int8)
        izp = int(rng.integers(-128, 128))
        xa = max(abs(-128 - izp), abs(127 - izp))
    w = rng.integers(-128, 128, (3, 3, c, 1)).astype(np.int8)
    wzp = 0 if i16 else int(rng.integers(-128, 128))
    bias = rng.integers(-(1 << 20), 1 << 20, c)
    geo = (izp, pads, (s, s), (d, d), (n, oh, ow, c), i16)
    got = K.depthwise_conv2d(x, K.depthwise_weights(w, wzp, xa), bias, *geo)
    want = S.depthwise_conv2d(x, S.depthwise_weights(w, wzp, xa), bias, *geo)
    check(got[0], want[0])
    assert got[1] == want[1]
    rs = _rescale_args(rng, c, i16, narrow)
    got = K.depthwise_conv2d_rescale(x, K.depthwise_weights(w, wzp, xa), bias, *geo, rs,
                                     np.int16)
    want = S.depthwise_conv2d_rescale(x, S.depthwise_weights(w, wzp, xa), bias, *geo, rs,
                                      np.int16)
    assert (got[1] == 0) == (want[1] == 0)
    if want[1] == 0:
        check(got[0], want[0])


@settings(max_examples=25, deadline=None)
@given(st.integers(3, 10), st.integers(3, 10), st.integers(1, 6), st.integers(1, 5),
       st.booleans(), st.booleans(), st.integers(0, 2**32 - 1))
def test_conv2d_fused_rescale_matches_twin(ih, iw, c, oc, i16, narrow, seed):
    """Winograd (int16) and im2col (int8) CONV2D with the fused RESCALE, counting or not."""
    from tosaint.kernels import compiled as K
    from tosaint.kernels.spec import tensor_ops as S
    rng = np.random.default_rng(seed)
    if i16:
        x = rng.integers(-32768, 32768, (1, ih, iw, c)).astype(np.int16)
        izp, xa = 0, 32768
    else:
        x = rng.integers(-128, 128, (1, ih, iw, c)).astype(np.int8)
        izp = int(rng.integers(-128, 128))
        xa = max(abs(-128 - izp), abs(127 - izp))
    w = rng.integers(-128, 128, (oc, 3, 3, c)).astype(np.int8)
    bias = rng.integers(-(1 << 20), 1 << 20, oc)
    geo = (izp, (1, 1, 1, 1), (1, 1), (1, 1), (1, ih, iw, oc), i16)
    rs = _rescale_args(rng, oc, i16, narrow)
    got = K.conv2d_rescale(x, K.conv_weights(w, 0, "conv2d", xa), bias, *geo, rs, np.int16)
    want = S.conv2d_rescale(x, S.conv_weights(w, 0, "conv2d", xa), bias, *geo, rs, np.int16)
    assert (got[1] == 0) == (want[1] == 0)
    if want[1] == 0:
        check(got[0], want[0])


def test_conv2d_int8_winograd_fused_rescale_matches_twin():
    """int8 with zero points -128 / 127 and 40 channels needs float64, so the int32 sums go
    through Winograd and the fused RESCALE, counting or not."""
    from tosaint.kernels import compiled as K
    from tosaint.kernels.spec import tensor_ops as S
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (1, 7, 6, 40)).astype(np.int8)
    w = rng.integers(-128, 128, (3, 3, 3, 40)).astype(np.int8)
    bias = rng.integers(-1000, 1000, 3)
    prep = K.conv_weights(w, 127, "conv2d", 255)
    assert prep.winograd() is not None
    geo = (-128, (1, 1, 0, 1), (1, 1), (1, 1), (1, 7, 5, 3), False)
    for narrow in (False, True):
        rs = _rescale_args(rng, 3, False, narrow)
        got = K.conv2d_rescale(x, prep, bias, *geo, rs, np.int16)
        want = S.conv2d_rescale(x, S.conv_weights(w, 127, "conv2d", 255), bias, *geo, rs,
                                np.int16)
        assert (got[1] == 0) == (want[1] == 0)
        assert (want[1] == 0) != narrow
        if want[1] == 0:
            check(got[0], want[0])
