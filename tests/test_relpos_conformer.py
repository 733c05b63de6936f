"""A conformer block with relative positional self-attention, written as ESPnet / WeNet /
NeMo write it (Transformer-XL's ``pos_bias_u``/``pos_bias_v``, a ``linear_pos`` projection of a
sinusoidal relative embedding, the ``rel_shift`` of pad + view + slice + ``view_as``, and a
key-padding mask built from a ``lengths`` input): lowered unmodified a16w8 and a8w8, bit-exact
on the official reference model, with an SNR floor against the float module, and compiled with
Vela for ethos-u85-256 and, lowered for it, ethos-u55-128."""
import math

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tosaint.torch as tt  # noqa: E402
from tosaint.quant import snr_db  # noqa: E402

from .helpers import check_lowered  # noqa: E402
from .test_torch_models import _randomise  # noqa: E402

pytestmark = pytest.mark.torch


class RelPositionalEncoding(nn.Module):
    def __init__(self, d, max_len=32):
        super().__init__()
        self.d = d
        pos = torch.arange(max_len - 1, -max_len, -1.0).unsqueeze(1)     # max_len-1 .. -(max_len-1)
        div = torch.exp(torch.arange(0, d, 2).float() * -(math.log(10000.0) / d))
        pe = torch.zeros(pos.size(0), d)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe.unsqueeze(0), persistent=False)

    def forward(self, x):
        t = x.size(1)
        center = self.pe.size(1) // 2
        return x * math.sqrt(self.d), self.pe[:, center - t + 1:center + t]


class RelPositionMultiHeadedAttention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h, self.d_k = h, d // h
        self.linear_q, self.linear_k = nn.Linear(d, d), nn.Linear(d, d)
        self.linear_v, self.linear_out = nn.Linear(d, d), nn.Linear(d, d)
        self.linear_pos = nn.Linear(d, d, bias=False)
        self.pos_bias_u = nn.Parameter(torch.randn(h, self.d_k) * 0.1)
        self.pos_bias_v = nn.Parameter(torch.randn(h, self.d_k) * 0.1)

    @staticmethod
    def rel_shift(x):
        b, h, t1, t2 = x.size()
        zero_pad = torch.zeros((b, h, t1, 1), dtype=x.dtype)
        x_padded = torch.cat([zero_pad, x], dim=-1).view(b, h, t2 + 1, t1)
        return x_padded[:, :, 1:].view_as(x)[:, :, :, :t2 // 2 + 1]

    def forward(self, x, pos_emb, mask):
        b = x.size(0)
        q = self.linear_q(x).view(b, -1, self.h, self.d_k)
        k = self.linear_k(x).view(b, -1, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(b, -1, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)
        q_u = (q + self.pos_bias_u).transpose(1, 2)
        q_v = (q + self.pos_bias_v).transpose(1, 2)
        ac = torch.matmul(q_u, k.transpose(-2, -1))
        bd = self.rel_shift(torch.matmul(q_v, p.transpose(-2, -1)))
        scores = (ac + bd) / math.sqrt(self.d_k)
        scores = scores.masked_fill(mask, float("-inf"))
        attn = torch.softmax(scores, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).contiguous().view(b, -1, self.h * self.d_k)
        return self.linear_out(out)


class RelPosConformerBlock(nn.Module):
    def __init__(self, d=16, h=2):
        super().__init__()
        self.pos_enc = RelPositionalEncoding(d)
        self.norm_mha = nn.LayerNorm(d)
        self.self_attn = RelPositionMultiHeadedAttention(d, h)
        self.norm_ff = nn.LayerNorm(d)
        self.feed_forward = nn.Sequential(nn.Linear(d, 2 * d), nn.SiLU(), nn.Dropout(0.1),
                                          nn.Linear(2 * d, d))

    def forward(self, x, lengths):               # x [B, T, D]
        t = x.size(1)
        mask = (torch.arange(t)[None, :] >= lengths[:, None])[:, None, None, :]
        x, pos_emb = self.pos_enc(x)
        x = x + self.self_attn(self.norm_mha(x), pos_emb, mask)
        x = x + 0.5 * self.feed_forward(self.norm_ff(x))
        return x


def _case(seed=4321):
    torch.manual_seed(seed)
    model = _randomise(RelPosConformerBlock(), seed)
    g = torch.Generator().manual_seed(seed + 1)

    def draw():
        return (torch.randn(2, 12, 16, generator=g), torch.randint(6, 13, (2,), generator=g))
    calib = [draw() for _ in range(4)]
    return model, calib, draw()


@pytest.mark.parametrize("quantization, floor", [("a16w8", 66), ("a8w8", 30)])
def test_relative_position_conformer_block_is_bit_exact(quantization, floor):
    model, calib, test = _case()
    lm = tt.lower(model, test, quantization=quantization, calibration=calib + [test])
    res = check_lowered(lm, test)
    with torch.no_grad():
        want = model(*test)
    got = lm.dequantize_outputs(res)
    got = got[0] if isinstance(got, tuple) else got
    keep = (torch.arange(test[0].shape[1])[None, :] < test[1][:, None]).numpy()
    s = snr_db(want.double().numpy()[keep], got.double().numpy()[keep])
    assert s >= floor, f"{quantization}: SNR {s:.1f} dB < {floor}"


@pytest.mark.slow
def test_relative_position_conformer_block_compiles_with_vela():
    pytest.importorskip("ethosu.vela")
    from tosaint import vela
    model, calib, test = _case()
    for quantization in ("a16w8", "a8w8"):
        for target in ("ethos-u85-256", "ethos-u55-128"):
            lm = tt.lower(model, test, quantization=quantization, calibration=calib,
                          target=target if target == "ethos-u55-128" else None)
            assert vela.format_findings(vela.check(lm.graph, target)) == ""
            result = vela.compile(lm.graph, target, per_layer=True)
            assert all(row["Target"] == "NPU" for row in result.per_layer)
