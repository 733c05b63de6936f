"""tosaint.torch on the normalisations and lookups of audio, diffusion and retrieval models:
``nn.GroupNorm``, ``nn.Embedding`` with an integer index input and ``F.normalize`` (the L2
norm over a dim and the division).

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
from tosaint.errors import UnpredictableError, UnsupportedOp  # noqa: E402
from tosaint.torch.lower import LOWERINGS  # noqa: E402

from .helpers import (check_lowered, check_runs_on_npu, lower_zoo_model,  # noqa: E402
                      snr_of_lowered)

pytestmark = pytest.mark.torch
U55, U85 = "ethos-u55-128", "ethos-u85-256"


# ---- zoo-style models -------------------------------------------------------------------------
class DiffusionResBlock(nn.Module):    # diffusers ResnetBlock2D: GroupNorm, SiLU, conv, twice
    def __init__(self, c=8):
        super().__init__()
        self.norm1 = nn.GroupNorm(4, c)
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.norm2 = nn.GroupNorm(1, c, eps=1e-6)       # one group: LayerNorm over C, H, W
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class Wav2VecFeatures(nn.Module):      # wav2vec2 feature extractor: conv, GroupNorm(C, C), GELU
    def __init__(self, c=8):
        super().__init__()
        self.conv0 = nn.Conv1d(1, c, 5, stride=2, bias=False)
        self.norm = nn.GroupNorm(c, c)                  # one group per channel, over time
        self.conv1 = nn.Conv1d(c, c, 3, stride=2, bias=False)
        self.gn_plain = nn.GroupNorm(2, c, affine=False)

    def forward(self, x):              # [B, 1, T]
        h = F.gelu(self.norm(self.conv0(x)))
        return self.gn_plain(self.conv1(h))


class TokenEncoder(nn.Module):         # token + position embeddings, a projection
    def __init__(self, vocab=30, d=16, n=6):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(n, d) * 0.1)
        self.norm = nn.LayerNorm(d)
        self.proj = nn.Linear(d, 8)

    def forward(self, ids):            # [B, N] int64
        return self.proj(self.norm(self.tok(ids) + self.pos))


class ConditionedBlock(nn.Module):     # a class embedding added to features (conditional nets)
    def __init__(self, classes=10, d=16):
        super().__init__()
        self.emb = nn.Embedding(classes, d)
        self.lin = nn.Linear(d, d)

    def forward(self, x, label):       # x [B, N, d], label [B, 1]
        return self.lin(F.silu(x + self.emb(label)))


class ProjectionHead(nn.Module):       # SimCLR / CLIP: linear, L2-normalised embedding
    def __init__(self, d=16, k=8):
        super().__init__()
        self.fc = nn.Linear(d, k)

    def forward(self, x):
        h = self.fc(x)
        return h / h.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def _int(shape, high):
    return lambda g: torch.randint(0, high, shape, generator=g)


def _float(shape):
    return lambda g: torch.randn(shape, generator=g)


#: name: (class, input makers, SNR floor a16w8, a8w8); a16w8 is bounded by the int8 weights
MODELS = {
    "diffusion_resblock": (DiffusionResBlock, [_float((1, 8, 6, 6))], 49, 32),  # 55.1, 38.0
    "wav2vec_features": (Wav2VecFeatures, [_float((2, 1, 40))], 40, 28),        # 46.5, 34.1
    "token_encoder": (TokenEncoder, [_int((2, 6), 30)], 41, 29),                # 47.1, 35.2
    "conditioned_block": (ConditionedBlock, [_float((2, 5, 16)), _int((2, 1), 10)],
                          44, 31),                                              # 50.0, 37.1
    "projection_head": (ProjectionHead, [_float((4, 16))], 42, 32),             # 47.8, 38.2
}


def _lower(name, quantization, target=None):
    cls, makers = MODELS[name][:2]
    return lower_zoo_model(cls, lambda g: tuple(m(g) for m in makers), quantization, target,
                           seed=11)


@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_norm_model_is_bit_exact_and_reaches_its_snr(name, quantization):
    model, lm, test = _lower(name, quantization)
    res = check_lowered(lm, test)
    s = snr_of_lowered(model, lm, res, test)
    floor = MODELS[name][2] if quantization == "a16w8" else MODELS[name][3]
    assert s >= floor, f"{name} {quantization}: SNR {s:.1f} dB < {floor}"


@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_norm_model_lowers_for_ethos_u55(name, quantization):
    """Lowered for Ethos-U55 the reference model gives the same integers as tosaint and as the
    plain lowering (the embedding is a one-hot CONV2D there, not a GATHER), and the preflight
    finds nothing the U55 cannot run."""
    _, plain, test = _lower(name, quantization)
    _, lm, _ = _lower(name, quantization, target=U55)
    res = check_lowered(lm, test)
    for (na, va), (nb, vb) in zip(plain.run(*test).items(), res.items()):
        assert va.dtype == vb.dtype and np.array_equal(va, vb), (na, nb)
    ops = {o.op.name for o in lm.graph.main.operators}
    assert "GATHER" not in ops
    from tosaint import vela
    assert vela.format_findings(vela.check(lm.graph, U55)) == ""


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_norm_model_compiles_with_vela(name, quantization):
    for target in (U85, U55):
        _, lm, _ = _lower(name, quantization, target=target if target == U55 else None)
        check_runs_on_npu(lm.graph, target)


# ---- GroupNorm --------------------------------------------------------------------------------
class Fn(nn.Module):
    def __init__(self, f, *mods):
        super().__init__()
        self.f = f
        self.mods = nn.ModuleList(mods)

    def forward(self, *xs):
        return self.f(self, *xs)


def _randomise(m, g):
    for prm in m.parameters():
        with torch.no_grad():
            prm.copy_(torch.randn(prm.shape, generator=g) * 0.5 + (1.0 if prm.dim() else 0.0))
    return m


#: groups, channels, input shape, affine; a16w8 / a8w8 SNR measured >= 86.5 / 41.0 dB
GROUP_NORMS = [
    (4, 8, (2, 8, 5, 3), True),
    (1, 6, (1, 6, 4, 4), True),        # one group
    (6, 6, (1, 6, 7), True),           # one channel per group, 3-D input
    (3, 6, (2, 6), False),             # 2-D input, no affine
    (2, 4, (1, 4, 2, 3, 2), True),     # 3 spatial dims
]


@pytest.mark.parametrize("groups,c,shape,affine", GROUP_NORMS,
                         ids=[f"G{g}_C{c}_{len(s)}d{'' if a else '_plain'}"
                              for g, c, s, a in GROUP_NORMS])
def test_group_norm_configurations_are_bit_exact_and_accurate(groups, c, shape, affine):
    g = torch.Generator().manual_seed(13)
    gn = _randomise(nn.GroupNorm(groups, c, affine=affine), g).eval()
    model = Fn(lambda s, x: s.mods[0](x), gn).eval()
    data = [(torch.randn(shape, generator=g) * 2 + 1,) for _ in range(3)]
    for quantization, floor in (("a16w8", 80), ("a8w8", 35)):
        lm = tt.lower(model, data[0], quantization=quantization, calibration=data)
        res = check_lowered(lm, data[0])
        s = snr_of_lowered(model, lm, res, data[0])
        assert s >= floor, f"{quantization}: SNR {s:.1f} dB < {floor}"


@pytest.mark.parametrize("running", [False, True])
def test_instance_norm_is_group_norm_with_a_group_per_channel(running):
    """InstanceNorm normalises each channel over its own values (running statistics in eval
    mode: the batch_norm affine map)."""
    g = torch.Generator().manual_seed(29)
    norm = _randomise(nn.InstanceNorm2d(5, affine=True, track_running_stats=running), g)
    if running:
        norm.running_mean.copy_(torch.randn(5, generator=g))
        norm.running_var.copy_(torch.rand(5, generator=g) + 0.5)
    model = Fn(lambda s, x: s.mods[0](x), norm).eval()
    data = [(torch.randn(2, 5, 4, 6, generator=g) * 2 + 1,) for _ in range(3)]
    for quantization, floor in (("a16w8", 81), ("a8w8", 36)):    # measured >= 87.9, 42.3
        lm = tt.lower(model, data[0], quantization=quantization, calibration=data)
        res = check_lowered(lm, data[0])
        s = snr_of_lowered(model, lm, res, data[0])
        assert s >= floor, f"{quantization}: SNR {s:.1f} dB < {floor}"


@pytest.mark.parametrize("groups,c,shape", [(1, 4, (1, 4, 128, 160)), (2, 6, (2, 6, 100, 250))],
                         ids=["G1_D81920", "G2_D75000"])
def test_group_norm_over_more_than_65536_values_sums_in_two_steps(groups, c, shape):
    """D * x - sum(x) would leave int32: the group is [C/G, HW], every sum over HW first,
    RESCALEd down, then over C/G; the same integers for Ethos-U55, which the preflight
    accepts (no reduced axis over 65536)."""
    g = torch.Generator().manual_seed(31)
    gn = _randomise(nn.GroupNorm(groups, c), g).eval()
    model = Fn(lambda s, x: s.mods[0](x), gn).eval()
    data = [(torch.randn(shape, generator=g) * 2 + 1,) for _ in range(2)]
    got = {}
    for quantization, floor in (("a16w8", 77), ("a8w8", 33)):    # measured >= 83.0, 39.0
        lm = tt.lower(model, data[0], quantization=quantization, calibration=data)
        got[quantization] = res = check_lowered(lm, data[0])
        s = snr_of_lowered(model, lm, res, data[0])
        assert s >= floor, f"{quantization}: SNR {s:.1f} dB < {floor}"
    lm = tt.lower(model, data[0], quantization="a16w8", calibration=data, target=U55)
    assert np.array_equal(next(iter(lm.run(*data[0]).values())),
                          next(iter(got["a16w8"].values())))
    from tosaint import vela
    assert vela.format_findings(vela.check(lm.graph, U55)) == ""


def test_group_norm_over_too_many_positions_is_refused():
    x = torch.randn(1, 2, 256, 257)
    model = Fn(lambda s, x: s.mods[0](x), nn.GroupNorm(1, 2)).eval()
    with pytest.raises(UnsupportedOp, match=r"group_norm over 65792 spatial positions \(at "
                                            r"most 65536"):
        tt.lower(model, (x,), calibration=[(x,)])


# ---- Embedding --------------------------------------------------------------------------------
def test_embedding_rows_are_the_table_codes():
    """The lookup is exact on the codes: the output holds the quantized table rows picked by
    the indices, at the table's scale (GATHER, and for Ethos-U55 a one-hot CONV2D)."""
    g = torch.Generator().manual_seed(17)
    emb = nn.Embedding(25, 7)
    with torch.no_grad():
        emb.weight.copy_(torch.randn(25, 7, generator=g) * 3)
    model = Fn(lambda s, i: s.mods[0](i), emb).eval()
    ids = torch.randint(0, 25, (3, 4, 2), generator=g)
    ids[0, 0, 0], ids[0, 0, 1] = 0, 24
    for quantization in ("a16w8", "a8w8"):
        for target in (None, U55):
            lm = tt.lower(model, (ids,), quantization=quantization, calibration=[(ids,)],
                          target=target)
            res = check_lowered(lm, (ids,))
            scale = lm.outputs[0]["scale"]
            qmax = 32767 if quantization == "a16w8" else 127
            assert scale == pytest.approx(float(emb.weight.abs().max()) / qmax, rel=1e-12)
            want = np.round(emb.weight.detach().double().numpy() / scale)[ids.numpy()]
            got = next(iter(res.values()))
            assert got.shape == (3, 4, 2, 7) and np.array_equal(got, want)


def test_embedding_index_out_of_range():
    """torch raises IndexError.  GATHER's REQUIRE (0 <= index < K) fails: tosaint raises
    UnpredictableError (the reference model aborts the process).  The Ethos-U55 one-hot
    lookup gives a row of zeros instead."""
    emb = nn.Embedding(10, 4)
    model = Fn(lambda s, i: s.mods[0](i), emb).eval()
    ids = torch.tensor([[1, 2, 3]])
    bad = torch.tensor([[1, 10, 3]])
    lm = tt.lower(model, (ids,), calibration=[(ids,)])
    with pytest.raises(UnpredictableError, match="outside 0..K-1"):
        lm.run(bad)
    lm55 = tt.lower(model, (ids,), calibration=[(ids,)], target=U55)
    got = next(iter(lm55.run(bad).values()))
    assert np.array_equal(got[0, 1], np.zeros(4)) and np.any(got[0, 0] != 0)
    neg = next(iter(lm55.run(torch.tensor([[1, -1, 3]])).values()))
    assert np.array_equal(neg[0, 1], np.zeros(4))


# ---- F.normalize and the L2 norm --------------------------------------------------------------
#: (function, input shape); F.normalize's graph is norm -> clamp_min -> expand_as -> div.
#: SNR measured a16w8 >= 86.5 dB, a8w8 >= 40.3 dB (the same for Ethos-U55)
NORMALIZE = {
    "explicit_last": (lambda s, x: x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12), (4, 16)),
    "no_eps_dim1": (lambda s, x: x / torch.linalg.vector_norm(x, dim=1, keepdim=True),
                    (2, 6, 5)),
    "two_dims": (lambda s, x: x / x.norm(dim=(1, 2), keepdim=True), (2, 3, 4, 5)),
    "F_normalize": (lambda s, x: F.normalize(x, dim=-1), (3, 12)),
    "F_normalize_dim1": (lambda s, x: F.normalize(x, dim=1), (1, 8, 4, 4)),
}


@pytest.mark.parametrize("name", list(NORMALIZE))
def test_l2_normalisation_is_bit_exact_and_accurate(name):
    """The whole normalisation is one rsqrt TABLE of the sum of squares times x: no
    quantized norm, no reciprocal TABLE."""
    if name.startswith("F_") and "aten.clamp_min" not in LOWERINGS:
        pytest.skip("aten.clamp_min (F.normalize's eps) has no lowering")
    f, shape = NORMALIZE[name]
    g = torch.Generator().manual_seed(19)
    data = [(torch.randn(shape, generator=g) * 3,) for _ in range(3)]
    model = Fn(f).eval()
    for quantization, floor in (("a16w8", 80), ("a8w8", 34)):
        for target in (None, U55):
            lm = tt.lower(model, data[0], quantization=quantization, calibration=data,
                          target=target)
            res = check_lowered(lm, data[0])
            ops = [o.op.name for o in lm.graph.main.operators]
            assert ops.count("TABLE") == 1 and "REDUCE_SUM" in ops
            s = snr_of_lowered(model, lm, res, data[0])
            assert s >= floor, f"{quantization} {target}: SNR {s:.1f} dB < {floor}"


def test_l2_norm_alone_and_with_other_uses():
    """A norm used as a value (here also added) is quantized itself: sqrt by the even-exponent
    mantissa TABLE; the division then takes the reciprocal TABLE."""
    def f(s, x):
        n = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return x / n + 0.1 * n
    g = torch.Generator().manual_seed(23)
    data = [(torch.randn(3, 10, generator=g),) for _ in range(3)]
    for model, floor16, floor8 in ((Fn(f), 81, 36),                          # 87.9, 42.0
                                   (Fn(lambda s, x: x.norm(dim=-1)), 92, 45)):  # 98.9, 51.4
        for quantization, floor in (("a16w8", floor16), ("a8w8", floor8)):
            lm = tt.lower(model.eval(), data[0], quantization=quantization, calibration=data)
            res = check_lowered(lm, data[0])
            s = snr_of_lowered(model, lm, res, data[0])
            assert s >= floor, f"{quantization}: SNR {s:.1f} dB < {floor}"


def test_vector_norms_other_than_l2_are_refused():
    x = torch.randn(2, 5)
    with pytest.raises(UnsupportedOp, match="vector norm of order 1"):
        tt.lower(Fn(lambda s, x: torch.linalg.vector_norm(x, 1, dim=-1)), (x,),
                 calibration=[(x,)])
