"""Masks that are not built from a ``lengths`` input.

A boolean mask given as a graph input (``forward(x, key_padding_mask)``, as fairseq and
HuggingFace-style encoders take it): a TOSA BOOL input (int32 0/1 when lowered for
Ethos-U55), bit-exact on the reference model, and the same integers as the same model building
the mask from a ``lengths`` input.  A constant causal mask (a registered ``tril`` buffer,
``masked_fill(bias[:, :, :T, :T] == 0, -inf)`` as nanoGPT writes it): an exact masked softmax,
bit-exact, also for Ethos-U55."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tosaint.torch as tt  # noqa: E402

from .helpers import check_lowered  # noqa: E402

pytestmark = pytest.mark.torch
T = 10


class Encoder(nn.Module):
    def __init__(self, from_lengths):
        super().__init__()
        self.from_lengths = from_lengths
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 16)

    def forward(self, x, key_padding_mask):
        if self.from_lengths:                   # the argument is lengths
            key_padding_mask = torch.arange(T)[None, :] >= key_padding_mask[:, None]
        y, _ = self.attn(x, x, x, key_padding_mask=key_padding_mask, need_weights=False)
        y = y.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
        return self.fc(y)


def _lowered(from_lengths, quantization, target=None):
    torch.manual_seed(7)
    model = Encoder(from_lengths).eval()
    g = torch.Generator().manual_seed(8)
    xs = [torch.randn(2, T, 16, generator=g) for _ in range(5)]
    lengths = torch.tensor([6, T])
    arg = lengths if from_lengths else torch.arange(T)[None, :] >= lengths[:, None]
    lm = tt.lower(model, (xs[0], arg), quantization=quantization,
                  calibration=[(x, arg) for x in xs], target=target)
    return lm, (xs[4], arg)


@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
def test_bool_mask_input_is_exact_and_equals_the_lengths_form(quantization):
    lm, test = _lowered(False, quantization)
    assert [i["dtype"] for i in lm.inputs] == [("INT16" if quantization == "a16w8" else "INT8"),
                                               "BOOL"]
    res = check_lowered(lm, test)
    lm_len, test_len = _lowered(True, quantization)
    res_len = lm_len.run(*test_len)
    (got,), (want,) = [r.outputs.values() for r in (res, res_len)]
    assert got.dtype == want.dtype and np.array_equal(got, want)
    y = lm(*test)
    with torch.no_grad():
        assert torch.equal(y, lm_len(*test_len))


def test_bool_mask_input_for_u55_is_int32_and_values_are_checked():
    lm, test = _lowered(False, "a8w8", target="ethos-u55-128")
    assert lm.inputs[1]["dtype"] == "INT32"
    check_lowered(lm, test)
    with pytest.raises(TypeError, match="integer input"):
        lm.quantize_inputs(test[0], test[1].float())
    lm, test = _lowered(False, "a8w8")
    with pytest.raises(ValueError, match="0 or 1"):
        lm.quantize_inputs(test[0], test[1].long() * 2)


class CausalSelfAttention(nn.Module):        # nanoGPT's
    def __init__(self, d=16, h=2, block=8):
        super().__init__()
        self.c_attn, self.c_proj, self.h, self.d = nn.Linear(d, 3 * d), nn.Linear(d, d), h, d
        self.register_buffer("bias", torch.tril(torch.ones(block, block)).view(1, 1, block,
                                                                                block))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.d, dim=2)
        k = k.view(B, T, self.h, C // self.h).transpose(1, 2)
        q = q.view(B, T, self.h, C // self.h).transpose(1, 2)
        v = v.view(B, T, self.h, C // self.h).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = torch.softmax(att, dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


@pytest.mark.parametrize("target", [None, "ethos-u55-128"])
@pytest.mark.parametrize("quantization, floor", [("a16w8", 38), ("a8w8", 27)])
def test_constant_causal_mask_is_an_exact_masked_softmax(quantization, floor, target):
    from tosaint.quant import snr_db
    torch.manual_seed(0)
    model = CausalSelfAttention().eval()
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(1, 6, 16, generator=g),) for _ in range(6)]
    lm = tt.lower(model, data[0], quantization=quantization, calibration=data[:5],
                  target=target)
    check_lowered(lm, data[5])
    with torch.no_grad():
        want = model(*data[5])
    assert snr_db(want.double().numpy(), lm(*data[5]).double().numpy()) >= floor
    # the first query attends to itself only: its output is the projection of its own value
    first = model(data[5][0][:, :1])
    assert snr_db(first.detach().double().numpy(),
                  lm(*data[5])[:, :1].double().numpy()) >= floor
