"""tosaint.torch on models written the way the model zoos write them.

Each model here is our own, small, in the style of torchvision / torchaudio / EMG code
(``inplace=True`` activations, ``+=`` residuals, functional calls, ``nn.MultiheadAttention``,
key-padding masks built from a ``lengths`` input).  Every one lowers unmodified a16w8 and a8w8,
gives bit-identical integers on tosaint and on the official reference model (whose status is
checked), reaches an SNR floor against the float module, and compiles with Vela for
ethos-u85-256 and, lowered for it, ethos-u55-128.
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import tosaint.torch as tt  # noqa: E402
from tosaint.errors import UnsupportedOp  # noqa: E402
from tosaint.quant import snr_db  # noqa: E402

pytestmark = pytest.mark.torch
U55, U85 = "ethos-u55-128", "ethos-u85-256"


# ---- zoo-style models -------------------------------------------------------------------------
class Block(nn.Module):                     # torchvision BasicBlock
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 5, 2, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = Block(8, 8)
        self.layer2 = Block(8, 12, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


class SE(nn.Module):                        # torchvision SqueezeExcitation
    def __init__(self, c, squeeze, scale_activation=nn.Hardsigmoid):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.activation = nn.ReLU()
        self.scale_activation = scale_activation()

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.scale_activation(self.fc2(self.activation(self.fc1(s))))
        return s * x


class TinyMobileNet(nn.Module):              # V2 inverted residual + V3 block with SE
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU6(inplace=True))
        self.expand = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16),
                                    nn.ReLU6(inplace=True))
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False),
                                nn.BatchNorm2d(16), nn.ReLU6(inplace=True))
        self.project = nn.Sequential(nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.v3 = nn.Sequential(nn.Conv2d(8, 16, 1), nn.Hardswish(inplace=True),
                                nn.Conv2d(16, 16, 3, 2, 1, groups=16), nn.Hardswish(),
                                SE(16, 8), nn.Conv2d(16, 12, 1))
        self.classifier = nn.Sequential(nn.Linear(12, 16), nn.Hardswish(inplace=True),
                                        nn.Dropout(0.2, inplace=True), nn.Linear(16, 5))

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.dw(self.expand(x)))
        x = self.v3(x)
        x = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
        return self.classifier(x)


class StochasticDepth(nn.Module):            # torchvision.ops.StochasticDepth
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty([x.shape[0], 1, 1, 1]).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class TinyEfficientNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8),
                                  nn.SiLU(inplace=True))
        self.block = nn.Sequential(nn.Conv2d(8, 24, 1, bias=False), nn.BatchNorm2d(24),
                                   nn.SiLU(inplace=True),
                                   nn.Conv2d(24, 24, 3, 1, 1, groups=24, bias=False),
                                   nn.BatchNorm2d(24), nn.SiLU(inplace=True),
                                   SE(24, 4, nn.Sigmoid),
                                   nn.Conv2d(24, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.stochastic_depth = StochasticDepth(0.2)
        self.head = nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(8, 4))

    def forward(self, x):
        x = self.stem(x)
        result = self.stochastic_depth(self.block(x))
        result += x
        return self.head(torch.flatten(F.adaptive_avg_pool2d(result, 1), 1))


class TinyViT(nn.Module):                    # torchvision VisionTransformer
    def __init__(self, dim=16, patch=4, image=12):
        super().__init__()
        self.patch, self.dim = patch, dim
        self.conv_proj = nn.Conv2d(3, dim, patch, patch)
        self.class_token = nn.Parameter(torch.randn(1, 1, dim) * 0.1)
        self.pos_embedding = nn.Parameter(torch.randn(1, (image // patch) ** 2 + 1, dim) * 0.1)
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(0.1),
                                 nn.Linear(2 * dim, dim))
        self.heads = nn.Linear(dim, 3)

    def forward(self, x):
        n, _, h, w = x.shape
        x = self.conv_proj(x).reshape(n, self.dim, (h // self.patch) * (w // self.patch))
        x = x.permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = x + self.pos_embedding
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + y
        x = x + self.mlp(self.ln_2(x))
        return self.heads(x[:, 0])


def lengths_to_padding_mask(lengths, max_length):   # torchaudio's helper
    return torch.arange(max_length)[None, :] >= lengths[:, None]


class TinyConformer(nn.Module):              # torchaudio Conformer layer, forward(x, lengths)
    def __init__(self, d=16, kernel=5):
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.SiLU(),
                                 nn.Dropout(0.1), nn.Linear(2 * d, d))
        self.attn_norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2)
        self.conv_norm = nn.LayerNorm(d)
        self.pointwise = nn.Conv1d(d, 2 * d, 1)
        self.depthwise = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.bn = nn.BatchNorm1d(d)
        self.out = nn.Conv1d(d, d, 1)
        self.q, self.k = nn.Linear(d, d), nn.Linear(d, d)
        self.pos = nn.Parameter(torch.randn(1, 64, d) * 0.1)

    def forward(self, x, lengths):           # x [B, T, D]
        mask = lengths_to_padding_mask(lengths, x.shape[1])
        x = x + self.pos[:, :x.shape[1]]
        x = x + 0.5 * self.ffn(x)
        y = self.attn_norm(x).transpose(0, 1)
        y, _ = self.attn(y, y, y, key_padding_mask=mask, need_weights=False)
        x = x + y.transpose(0, 1)
        c = self.conv_norm(x).transpose(1, 2)
        c = F.glu(self.pointwise(c), dim=1)
        c = F.silu(self.bn(self.depthwise(c)))
        x = x + self.out(c).transpose(1, 2)
        # a hand-written masked attention pooling: masked_fill with -inf before softmax
        scores = (self.q(x) * self.k(x)).sum(-1) / 4.0
        scores = scores.masked_fill(mask, float("-inf"))
        w = torch.softmax(scores, dim=-1)
        return x * w.unsqueeze(-1), lengths


class TinyTCN(nn.Module):                    # EMG / audio temporal conv net
    def __init__(self, c=6, w=12):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv1d(c, w, 5, 2, 2), nn.BatchNorm1d(w),
                                  nn.ReLU(inplace=True))
        self.enc2 = nn.Sequential(nn.Conv1d(w, w, 3, 2, 1), nn.BatchNorm1d(w),
                                  nn.ReLU(inplace=True))
        self.pool = nn.MaxPool1d(3, 2, ceil_mode=True)
        self.context = nn.AdaptiveAvgPool1d(3)
        self.fc = nn.Linear(3 * w, w)
        self.up = nn.ConvTranspose1d(w, w, 4, stride=2, padding=1)
        self.bn_up = nn.BatchNorm1d(w)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Conv1d(w, 4, 1)

    def forward(self, x):                    # [B, C, T]
        h = self.enc2(self.enc1(x))
        c = torch.flatten(self.context(self.pool(h)), 1)
        h = h + F.relu(self.fc(c)).unsqueeze(-1)
        h = F.relu(self.bn_up(self.up(h)), inplace=True)
        h = F.pad(self.drop(h), (1, 1))
        h = F.interpolate(h, size=x.shape[-1], mode="linear", align_corners=False)
        return self.head(h)


class TinyUNet(nn.Module):                   # 2-D decoder: transposed conv, bilinear, ceil pool
    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(inplace=True),
                                  nn.AvgPool2d(2, ceil_mode=True))
        self.mid = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU(inplace=True))
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        h = self.mid(self.down(x))
        h = self.up(h)[..., :x.shape[2], :x.shape[3]]
        h = h + F.interpolate(self.down(x), size=x.shape[2:], mode="bilinear")
        return self.out(F.adaptive_avg_pool2d(h, (5, 3)))


def _randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


def _lengths(b, t, g):
    return torch.randint(t // 2, t + 1, (b,), generator=g)


#: name -> (factory, input maker(generator), SNR floors a16w8 / a8w8 in dB: about 6 dB under
#: what was measured, calibrated on the test input too)
MODELS = {
    "resnet": (TinyResNet, lambda g: (torch.randn(1, 3, 24, 24, generator=g),), 42, 39),
    "mobilenet": (TinyMobileNet, lambda g: (torch.randn(1, 3, 20, 20, generator=g),), 56, 45),
    "efficientnet": (TinyEfficientNet, lambda g: (torch.randn(1, 3, 16, 16, generator=g),),
                     47, 36),
    "vit": (TinyViT, lambda g: (torch.randn(1, 3, 12, 12, generator=g),), 41, 19),
    "conformer": (TinyConformer, lambda g: (torch.randn(2, 10, 16, generator=g),
                                            _lengths(2, 10, g)), 48, 27),
    "tcn": (TinyTCN, lambda g: (torch.randn(1, 6, 40, generator=g),), 40, 34),
    "unet": (TinyUNet, lambda g: (torch.randn(1, 3, 15, 10, generator=g),), 45, 35),
}


def _data(name, seed):
    make_inputs = MODELS[name][1]
    g = torch.Generator().manual_seed(seed)
    return [make_inputs(g) for _ in range(4)], make_inputs(g)


def _lower(name, quantization, target=None, seed=1234, calibrate_on_test=False):
    """The model, its lowering and a test input.  ``calibrate_on_test``: the test input joins
    the calibration set, so that an SNR measures the integer arithmetic rather than how well
    four random inputs cover the range of a fifth (softmax outputs of the conformer: 21 dB
    without, 54 dB with)."""
    torch.manual_seed(seed)
    model = _randomise(MODELS[name][0](), seed)
    calib, test = _data(name, seed + 1)
    if calibrate_on_test:
        calib = calib + [test]
    lm = tt.lower(model, test, quantization=quantization, calibration=calib, target=target)
    return model, lm, test


def _check_bit_exact(lm, test):
    pytest.importorskip("tosa_reference_model")
    res = lm.run(*test)
    ref = lm.run_reference(*test)              # raises unless the reference status is VALID
    assert [o["name"] for o in lm.outputs] == list(ref)
    for name, want in ref.items():
        got = res[name]
        assert got.shape == want.shape and got.dtype == want.dtype
        assert np.array_equal(got, want), name
    return res


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_style_model_lowers_unmodified_and_is_bit_exact(name, quantization):
    model, lm, test = _lower(name, quantization, calibrate_on_test=True)
    res = _check_bit_exact(lm, test)
    with torch.no_grad():
        want = model(*test)
    got = lm.dequantize_outputs(res)
    want = want if isinstance(want, tuple) else (want,)
    got = got if isinstance(got, tuple) else (got,)
    floor = MODELS[name][2] if quantization == "a16w8" else MODELS[name][3]
    for w, g in zip(want, got):
        if not w.is_floating_point():          # an integer output (lengths) passes through
            assert g.dtype == torch.int64 and torch.equal(g, w)
            continue
        s = snr_db(w.double().numpy(), g.double().numpy())
        assert s >= floor, f"{name} {quantization}: SNR {s:.1f} dB < {floor}"


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_style_model_compiles_with_vela(name, quantization):
    pytest.importorskip("ethosu.vela")
    from tosaint import vela
    for target in (U85, U55):
        _, lm, _ = _lower(name, quantization, target=target if target == U55 else None)
        assert vela.format_findings(vela.check(lm.graph, target)) == ""
        result = vela.compile(lm.graph, target, per_layer=True)
        assert all(row["Target"] == "NPU" for row in result.per_layer)


def test_torchvision_zoo_models_when_torchvision_imports():
    try:
        from torchvision import models
    except Exception as e:             # not installed, or a wheel built for another torch
        pytest.skip(f"torchvision does not import here: {type(e).__name__}")
    for make in (models.resnet18, models.mobilenet_v2):
        model = make(num_classes=4).eval()
        x = torch.randn(1, 3, 32, 32)
        lm = tt.lower(model, (x,), calibration=[(torch.randn(1, 3, 32, 32),)])
        _check_bit_exact(lm, (x,))


# ---- in-place forms ---------------------------------------------------------------------------
class InPlace(nn.Module):
    def __init__(self, inplace):
        super().__init__()
        self.inplace = inplace
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=inplace)
        self.relu6 = nn.ReLU6(inplace=inplace)

    def forward(self, x):
        out = self.conv(x)
        identity = out
        out = self.relu(out * 1.0)
        if self.inplace:
            out += identity
            out.mul_(0.5)
            out.clamp_(-1.0, 2.0)
            out.relu_()
        else:
            out = out + identity
            out = out.mul(0.5)
            out = out.clamp(-1.0, 2.0)
            out = out.relu()
        return self.relu6(out)


def _structure(graph):
    blk = graph.main
    ops = [(o.op, list(o.inputs), list(o.outputs), sorted(o.attrs.items())) for o in
           blk.operators]
    tensors = sorted((n, tuple(t.shape), t.dtype, None if t.data is None else
                      np.asarray(t.data).tobytes()) for n, t in blk.tensors.items())
    return ops, tensors, list(blk.inputs), list(blk.outputs)


def test_inplace_ops_lower_exactly_as_their_out_of_place_forms():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 3, 8, 8, generator=g)
    cal = [(torch.randn(1, 3, 8, 8, generator=g),) for _ in range(3)]
    a, b = InPlace(True).eval(), InPlace(False).eval()
    b.load_state_dict(a.state_dict())
    for q in ("a16w8", "a8w8"):
        la = tt.lower(a, (x,), quantization=q, calibration=cal)
        lb = tt.lower(b, (x,), quantization=q, calibration=cal)
        assert _structure(la.graph) == _structure(lb.graph)      # (not the op locations)
        assert la.outputs == lb.outputs
    _check_bit_exact(la, (x,))


class InPlaceOnAView(nn.Module):
    def forward(self, x):
        v = x.view(-1)
        y = x * 2
        y.relu_()                    # fine: nothing reads y's old value
        w = y.view(-1)
        y.add_(1.0)                  # w is a view of y and read below: stays in place
        return w * v


def test_inplace_op_whose_storage_is_read_again_is_reported_as_such():
    with pytest.raises(UnsupportedOp) as e:
        tt.lower(InPlaceOnAView(), (torch.randn(2, 3),))
    msg = str(e.value)
    assert "aten.add_.Tensor x1 (in-place variant of aten.add, which is supported" in msg
    assert "relu_" not in msg
    assert "test_torch_models.py:" in msg and "y.add_(1.0)" in msg


# ---- integer inputs and data-dependent shapes ----------------------------------------------------
class MaskedMean(nn.Module):
    def forward(self, x, lengths):         # x [B, T, D], lengths [B]
        keep = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        s = torch.where(keep.unsqueeze(-1), x, 0.0).sum(1)
        return s / 8.0, lengths


def test_integer_input_passes_through_as_int32_and_masks_are_exact():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 8, 4, generator=g)
    lengths = torch.tensor([8, 5, 1])
    lm = tt.lower(MaskedMean(), (x, lengths),
                  calibration=[(torch.randn(3, 8, 4, generator=g), lengths) for _ in range(3)]
                  + [(x, lengths)])
    assert [i["dtype"] for i in lm.inputs] == ["INT16", "INT32"]
    res = _check_bit_exact(lm, (x, lengths))
    y, n = lm.dequantize_outputs(res)
    assert n.dtype == torch.int64 and torch.equal(n, lengths)
    want = MaskedMean()(x, lengths)[0]
    assert snr_db(want.double().numpy(), y.double().numpy()) > 60
    with pytest.raises(ValueError, match="outside INT32"):
        lm.quantize_inputs(x, torch.tensor([1, 2, 1 << 40]))


class DataDependent(nn.Module):
    def forward(self, x, lengths):
        n = int(lengths.max())
        return x[:, :n] * 2


def test_data_dependent_shape_is_one_line_with_the_users_source():
    with pytest.raises(UnsupportedOp) as e:
        tt.lower(DataDependent(), (torch.randn(2, 6), torch.tensor([3, 4])))
    msg = str(e.value)
    assert "\n" not in msg
    assert "depends on input values" in msg and "test_torch_models.py:" in msg


# ---- messages (#17) -----------------------------------------------------------------------------
def test_import_without_torch_names_the_extra():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import tosaint.torch\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: tosaint.torch needs PyTorch: pip install \"tosaint[torch]\"")


def test_quant_maths_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from tosaint.quant import multiplier\n"
            "print(multiplier(0.5))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(1073741824, 31)"


def _small():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.LayerNorm(8), nn.Softmax(-1)).eval()
    x = torch.randn(2, 8)
    return m, x, tt.lower(m, (x,))


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    _, x, lm = _small()
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "tosaint\[plot\]"'):
        lm.plot(tmp_path / "snr.png")
    assert not (tmp_path / "snr.png").exists()


def test_report_cuts_the_ops_column_between_ops_and_sources_point_at_the_users_file():
    _, x, lm = _small()
    text = str(lm.report(x))
    rows = [r for r in lm.report(x)]
    assert rows and all("test_torch_models.py:" in r["source"] for r in rows)
    known = {op for r in rows for op in r["tosa_ops"]}
    for line in text.splitlines()[2:]:
        if line.startswith("diagnostic"):
            continue
        ops_col = [c.strip() for c in line.split("  ") if c.strip()][5]
        for item in ops_col.split(","):
            if item.rstrip("0123456789").endswith("x"):          # RESCALEx2
                item = item.rstrip("0123456789")[:-1]
            assert item in known or item.startswith("+"), (item, line)


def test_vela_message_quotes_the_extra(monkeypatch):
    from tosaint import vela
    from tosaint.builder import GraphBuilder
    from tosaint.errors import BackendError
    from tosaint.schema.definition import DType
    b = GraphBuilder()
    b.output(b.identity(b.input((1, 4), DType.INT8)))
    monkeypatch.setitem(sys.modules, "ethosu.vela", None)
    with pytest.raises(BackendError, match=r'pip install "tosaint\[vela\]"'):
        vela.run_vela(b.build(), U85)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["conformer", "tcn"])
def test_u55_lowering_computes_the_same_integers(name):
    """For Ethos-U55 the masks are int32 0/1 instead of bool + SELECT, the 1-D linear resize a
    convolution with the bilinear weights and the transposed convolution zero insertion +
    CONV2D: the reference model gives the same integers as for the plain lowering."""
    for quantization in ("a16w8", "a8w8"):
        _, plain, test = _lower(name, quantization)
        _, for55, _ = _lower(name, quantization, target=U55)
        ops = {o.op.name for o in for55.graph.main.operators}
        assert not ops & {"SELECT", "GREATER_EQUAL", "RESIZE", "TRANSPOSE_CONV2D"}
        a, b = plain.run_reference(*test), for55.run_reference(*test)
        for (na, va), (nb, vb) in zip(a.items(), b.items()):
            assert va.dtype == vb.dtype and np.array_equal(va, vb), (na, nb)


class Thresholds(nn.Module):
    def forward(self, x):
        a = torch.where(x > 0.3, x, 0.1 * x)
        b = torch.where(0.5 >= x, a, -x)
        return torch.where(x <= -0.25, b, a) + torch.where(x == 1.0, x, 0.0)


def test_comparisons_of_activations_with_constants_decide_on_the_integer_codes():
    """x > c is decided on x's integer code q against a threshold made exact for integers, so
    the lowered graph agrees with torch run on the dequantized input."""
    g = torch.Generator().manual_seed(21)
    x = torch.randn(3, 40, generator=g)
    cal = [(torch.randn(3, 40, generator=g),) for _ in range(3)] + [(x,)]
    for target in (None, U55):
        lm = tt.lower(Thresholds(), (x,), calibration=cal, target=target)
        res = _check_bit_exact(lm, (x,))
        q = lm.inputs[0]
        xq = torch.from_numpy(lm.quantize_inputs(x)[q["name"]].astype(np.float64) * q["scale"])
        want = Thresholds()(xq.float())
        assert snr_db(want.double().numpy(), lm.dequantize_outputs(res).double().numpy()) > 75
        if target == U55:
            from tosaint import vela
            assert vela.check(lm.graph, U55) == []
