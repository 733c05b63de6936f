"""tosaint.torch on the ops the model zoos use beyond the common ones: ``torch.einsum``,
pixel (un)shuffle, adaptive max pooling and ``amax``/``amin``.

Each zoo-style model lowers unmodified a16w8 and a8w8, gives bit-identical integers on tosaint
and on the official reference model, reaches an SNR floor against the float module (about
6 dB under the measured SNR, calibrated with the test input so that the SNR measures the
integer arithmetic), and lowers for Ethos-U55 to a graph the reference model runs bit-exactly
and the preflight check passes.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import tosaint.torch as tt  # noqa: E402
from tosaint.errors import UnsupportedOp  # noqa: E402
from tosaint.quant import snr_db  # noqa: E402

from .helpers import (check_lowered, check_runs_on_npu, lower_zoo_model,  # noqa: E402
                      snr_of_lowered)

pytestmark = pytest.mark.torch
U55 = "ethos-u55-128"


# ---- zoo-style models -------------------------------------------------------------------------
class EinsumAttention(nn.Module):      # lucidrains / timm style: einsum attention, einsum weight
    def __init__(self, d=16, heads=2):
        super().__init__()
        self.h = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.w_out = nn.Parameter(torch.randn(d, d) / d ** 0.5)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.h, d // self.h).permute(0, 2, 1, 3) for t in (q, k, v))
        a = torch.einsum("bhid,bhjd->bhij", q, k) * (d // self.h) ** -0.5
        a = a.softmax(dim=-1)
        o = torch.einsum("bhij,bhjd->bihd", a, v).reshape(b, n, d)
        return torch.einsum("bnd,dk->bnk", o, self.w_out)


class SubPixelUpsampler(nn.Module):    # ESPCN / Real-ESRGAN: space-to-depth in, PixelShuffle out
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(12, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 3 * 9, 3, padding=1)
        self.ps = nn.PixelShuffle(3)

    def forward(self, x):
        h = F.leaky_relu(self.c1(F.pixel_unshuffle(x, 2)), 0.1)
        return self.ps(self.c2(h))


class CBAM(nn.Module):                 # channel attention (avg + max pool), spatial (mean, max)
    def __init__(self, c=8):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(c, 2, 1), nn.ReLU(), nn.Conv2d(2, c, 1))
        self.sp = nn.Conv2d(2, 1, 7, padding=3)
        self.head = nn.Conv2d(c, c, 1)

    def forward(self, x):
        a = self.fc(F.adaptive_avg_pool2d(x, 1)) + self.fc(F.adaptive_max_pool2d(x, 1))
        x = x * torch.sigmoid(a)
        m = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        x = x * torch.sigmoid(self.sp(m))
        return self.head(F.adaptive_max_pool2d(x, (3, 2)))     # uneven and even windows


class AudioPooling(nn.Module):         # 1-D: adaptive max pool to a fixed length, min/max spans
    def __init__(self, c=6):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, padding=1)

    def forward(self, x):              # [B, C, T]
        h = torch.tanh(self.conv(x))
        p = F.adaptive_max_pool1d(h, 4)
        span = torch.amax(h, -1, keepdim=True) - torch.amin(h, -1, keepdim=True)
        return p * span


#: name: (class, input shape, SNR floor a16w8, a8w8); a16w8 is bounded by the int8 weights
MODELS = {
    "einsum_attention": (EinsumAttention, (1, 6, 16), 39, 27),     # measured 44.9, 33.5
    "subpixel": (SubPixelUpsampler, (1, 3, 6, 8), 38, 31),         # 43.8, 37.2
    "cbam": (CBAM, (1, 8, 9, 8), 47, 31),                          # 53.5, 37.6
    "audio_pooling": (AudioPooling, (2, 6, 11), 45, 34),           # 51.6, 40.6
}


def _lower(name, quantization, target=None):
    cls, shape = MODELS[name][:2]
    return lower_zoo_model(cls, lambda g: (torch.randn(shape, generator=g),), quantization,
                           target)


@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_op_model_is_bit_exact_and_reaches_its_snr(name, quantization):
    model, lm, test = _lower(name, quantization)
    s = snr_of_lowered(model, lm, check_lowered(lm, test), test)
    floor = MODELS[name][2] if quantization == "a16w8" else MODELS[name][3]
    assert s >= floor, f"{name} {quantization}: SNR {s:.1f} dB < {floor}"


@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_op_model_lowers_for_ethos_u55(name, quantization):
    """Lowered for Ethos-U55 (int16 MATMULs as int8 ones) the reference model gives the same
    integers as tosaint, and the preflight finds nothing the U55 cannot run."""
    _, lm, test = _lower(name, quantization, target=U55)
    check_lowered(lm, test)
    if name == "einsum_attention" and quantization == "a16w8":
        ops = [o.op.name for o in lm.graph.main.operators]
        assert "MATMUL" in ops
        dts = {lm.graph.main.tensors[o.inputs[0]].dtype.name
               for o in lm.graph.main.operators if o.op.name == "MATMUL"}
        assert dts == {"INT8"}
    from tosaint import vela
    assert vela.format_findings(vela.check(lm.graph, U55)) == ""


# ---- einsum equations -------------------------------------------------------------------------
class Einsum(nn.Module):
    def __init__(self, eq, const_shape=None, const_at=1):
        super().__init__()
        self.eq, self.const_at = eq, const_at
        self.w = None if const_shape is None else nn.Parameter(torch.randn(const_shape))

    def forward(self, *xs):
        xs = list(xs)
        if self.w is not None:
            xs.insert(self.const_at, self.w)
        return torch.einsum(self.eq, *xs)


#: equation, activation shapes, constant shape, constant position; every SNR a8w8 measured is
#: 37 dB or more, a16w8 82 dB or more except with an int8 weight (46-48 dB)
EQUATIONS = [
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)], None, 1),
    ("bhqk,bhkd->bqhd", [(1, 2, 3, 5), (1, 2, 5, 4)], None, 1),    # output permuted
    ("...id,...jd->...ij", [(1, 3, 5, 4), (2, 1, 6, 4)], None, 1),  # broadcast batch
    ("...id,...jd->...ij", [(2, 3, 5, 4), (3, 6, 4)], None, 1),    # ranks differ
    ("bi,bj->bij", [(3, 4), (3, 5)], None, 1),                     # outer product
    ("bd,bd->b", [(3, 4), (3, 4)], None, 1),                       # batched dot
    ("ij,jk", [(3, 4), (4, 5)], None, 1),                          # implicit output
    ("bij->bji", [(2, 3, 4)], None, 1),                            # one operand
    ("bnd,dk->bnk", [(2, 5, 8)], (8, 6), 1),                       # int8 weight
    ("dk,bnd->bkn", [(2, 5, 8)], (8, 6), 0),                       # weight first, permuted
    ("bnd,dkz->bnk", [(2, 3, 4)], (4, 2, 3), 1),                   # z summed in float
    ("bhqd,hkd->bhqk", [(2, 2, 3, 4)], (2, 5, 4), 1),              # batched: int16 constant
]


@pytest.mark.parametrize("eq,shapes,const_shape,const_at", EQUATIONS,
                         ids=[e[0] for e in EQUATIONS])
def test_einsum_equations_are_bit_exact_and_match_torch(eq, shapes, const_shape, const_at):
    torch.manual_seed(3)
    model = Einsum(eq, const_shape, const_at).eval()
    g = torch.Generator().manual_seed(4)
    data = [tuple(torch.randn(s, generator=g) for s in shapes) for _ in range(3)]
    weight = const_shape is not None and "h" not in eq
    for quantization, floor in (("a16w8", 40 if weight else 76), ("a8w8", 31)):
        lm = tt.lower(model, data[0], quantization=quantization, calibration=data)
        res = check_lowered(lm, data[0])
        with torch.no_grad():
            want = model(*data[0])
        s = snr_db(want.double().numpy(), lm.dequantize_outputs(res).double().numpy())
        assert s >= floor, f"{eq} {quantization}: SNR {s:.1f} dB < {floor}"


@pytest.mark.parametrize("eq,shapes,why", [
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], "with 3 operands"),
    ("bii->bi", [(2, 3, 3)], "repeated within one operand"),
    ("bij,bjk->bk", [(2, 3, 4), (2, 4, 5)], "index 'i' is summed within one operand"),
    ("bij,bjk->bik", [(2, 3, 1), (2, 4, 5)], "broadcast along the contracted index 'j'"),
])
def test_einsum_that_cannot_be_one_matmul_is_refused_naming_the_equation(eq, shapes, why):
    xs = tuple(torch.randn(s) for s in shapes)
    with pytest.raises(UnsupportedOp, match=f"einsum '{eq}'.*{why}"):
        tt.lower(Einsum(eq), xs, calibration=[xs])


# ---- pixel shuffle, adaptive max, amax/amin, max/min: the layouts torch uses -----------------
class Fn(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


SHAPE_OPS = {
    "pixel_shuffle_b2_r3": (lambda x: F.pixel_shuffle(x, 3), (2, 18, 2, 3)),
    "pixel_shuffle_3d": (lambda x: F.pixel_shuffle(x, 2), (8, 3, 4)),
    "pixel_unshuffle_b2_r3": (lambda x: F.pixel_unshuffle(x, 3), (2, 2, 6, 9)),
    "adaptive_max_up": (lambda x: F.adaptive_max_pool2d(x, (5, 5)), (1, 2, 3, 4)),
    "adaptive_max_3d": (lambda x: F.adaptive_max_pool2d(x, (2, 3)), (4, 7, 7)),
    "adaptive_max_1d_even": (lambda x: F.adaptive_max_pool1d(x, 4), (2, 4, 12)),
    "amax_all": (lambda x: x - x.amax(), (3, 7)),
    "amin_two_dims": (lambda x: torch.amin(x, (0, 2)), (3, 4, 5)),
    "max_dim_keepdim": (lambda x: torch.max(x, 1, keepdim=True)[0], (1, 8, 5, 5)),  # CBAM
    "min_dim_values": (lambda x: torch.min(x, -1).values, (3, 7)),
    "max_all": (lambda x: x.max().reshape(1), (3, 7)),
    "max_pool_return_indices": (lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True)[0],
                                (1, 2, 7, 6)),
}


@pytest.mark.parametrize("name", list(SHAPE_OPS))
def test_data_movement_and_extremes_are_exact_on_the_codes(name):
    """These ops move or select codes: the integers are the input codes rearranged exactly as
    torch rearranges the dequantized input (the same scale, no rounding)."""
    f, shape = SHAPE_OPS[name]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=g)
    for quantization in ("a16w8", "a8w8"):
        lm = tt.lower(Fn(f), (x,), quantization=quantization, calibration=[(x,)])
        res = check_lowered(lm, (x,))
        q = lm.inputs[0]
        xq = (lm.quantize_inputs(x)[q["name"]].astype(np.float64) - q["zero_point"]) \
            * q["scale"]
        want = f(torch.from_numpy(xq)).numpy()
        got = lm.dequantize_outputs(res).double().numpy()
        if name == "amax_all":            # x - max(x) rounds once more
            assert snr_db(want, got) > (70 if quantization == "a16w8" else 30)
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_op_model_compiles_with_vela_for_ethos_u55(name, quantization):
    _, lm, _ = _lower(name, quantization, target=U55)
    check_runs_on_npu(lm.graph, U55)


@pytest.mark.parametrize("f,why", [
    (lambda x: torch.max(x, -1)[1], r"indices of torch.max over a dim \(argmax\)"),
    (lambda x: F.adaptive_max_pool1d(x, 3, return_indices=True)[1],
     "indices of adaptive max pooling"),
])
def test_used_indices_are_refused_by_name(f, why):
    x = torch.randn(3, 7)
    with pytest.raises(UnsupportedOp, match=why):
        tt.lower(Fn(f), (x,), calibration=[(x,)])
