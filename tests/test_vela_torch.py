"""tosaint.torch front end x Vela: lowered a16w8/a8w8 models compile for Ethos-U85 and, lowered
with target="ethos-u55-128", for Ethos-U55 (for TOSA a successful Vela compile means every
operator runs on the NPU: there is no CPU fallback)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ethosu.vela")
tt = pytest.importorskip("tosaint.torch")
if not hasattr(tt, "lower"):
    pytest.skip("tosaint.torch.lower is not available", allow_module_level=True)

from tosaint import vela  # noqa: E402
from tosaint.errors import BackendError  # noqa: E402

pytestmark = pytest.mark.torch
nn = torch.nn
U55, U85 = "ethos-u55-128", "ethos-u85-256"


class Lambda(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, *x):
        return self.f(*x)


class MHSA(nn.Module):
    def __init__(self, d=16, h=2):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.h = h

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (f(x).reshape(b, t, self.h, d // self.h).transpose(1, 2)
                   for f in (self.q, self.k, self.v))
        a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / (d // self.h) ** 0.5, dim=-1)
        return self.o(torch.matmul(a, v).transpose(1, 2).reshape(b, t, d))


class Conformer(nn.Module):
    """FFN/2 + MHSA + conv module (pointwise, GLU, depthwise, BN, SiLU) + FFN/2 + LayerNorm."""

    def __init__(self, d=16):
        super().__init__()
        self.ff1 = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.SiLU(),
                                 nn.Linear(2 * d, d))
        self.ln_att, self.att = nn.LayerNorm(d), MHSA(d)
        self.ln_conv = nn.LayerNorm(d)
        self.pw1, self.pw2 = nn.Conv1d(d, 2 * d, 1), nn.Conv1d(d, d, 1)
        self.dw, self.bn = nn.Conv1d(d, d, 3, padding=1, groups=d), nn.BatchNorm1d(d)
        self.ff2 = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.SiLU(),
                                 nn.Linear(2 * d, d))
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        x = x + 0.5 * self.ff1(x)
        x = x + self.att(self.ln_att(x))
        y = self.ln_conv(x).transpose(1, 2)
        y = nn.functional.silu(self.bn(self.dw(nn.functional.glu(self.pw1(y), dim=1))))
        x = x + self.pw2(y).transpose(1, 2)
        x = x + 0.5 * self.ff2(x)
        return self.ln(x)


class ReLU6CNN(nn.Module):
    """One-sided int8 activations (a8w8 zero points) into CONV2D, AVG_POOL2D, DEPTHWISE_CONV2D,
    MAX_POOL2D, TABLE, ADD and the final linear layer."""

    def __init__(self):
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = nn.functional.relu6(self.bn(self.c1(x)))
        z = nn.functional.avg_pool2d(y, 3, 1, padding=1) + nn.functional.hardswish(self.c2(y))
        z = nn.functional.max_pool2d(torch.sigmoid(self.dw(z)), 2)
        return self.fc(z.mean((2, 3)))


MODELS = {
    "linear": (lambda: nn.Linear(16, 8), [(1, 4, 16)]),
    "conv2d": (lambda: nn.Conv2d(4, 8, 3, padding=1), [(1, 4, 8, 8)]),
    "sigmoid": (lambda: nn.Sigmoid(), [(1, 4, 16)]),
    "matmul": (lambda: Lambda(torch.matmul), [(1, 4, 16), (1, 16, 8)]),
    "layernorm": (lambda: nn.LayerNorm(16), [(1, 4, 16)]),
    "softmax": (lambda: nn.Softmax(dim=-1), [(1, 4, 16)]),
    "conformer": (lambda: Conformer(), [(1, 6, 16)]),
    "relu6_cnn": (lambda: ReLU6CNN(), [(1, 3, 8, 8)]),
}


def lowered(name, quantization, target):
    torch.manual_seed(0)
    make, shapes = MODELS[name]
    mod = make().eval()
    ex = tuple(torch.randn(*s) for s in shapes)
    cal = [tuple(torch.randn(*s) for s in shapes) for _ in range(3)]
    return mod, ex, tt.lower(mod, ex, quantization=quantization, calibration=cal,
                             target=target)


@pytest.mark.parametrize("quantization", ["a16w8", "a8w8"])
@pytest.mark.parametrize("name", list(MODELS))
def test_lowered_model_compiles_for_u85_and_u55(name, quantization):
    _, _, l85 = lowered(name, quantization, None)
    assert vela.check(l85.graph, U85) == []
    r85 = vela.compile(l85.graph, U85, per_layer=True)
    assert all(row["Target"] == "NPU" for row in r85.per_layer)
    _, _, l55 = lowered(name, quantization, U55)
    assert vela.check(l55.graph, U55) == []
    r55 = vela.compile(l55.graph, U55, per_layer=True)
    assert all(row["Target"] == "NPU" for row in r55.per_layer)


def test_u55_lowering_is_needed_and_bit_identical():
    """a16w8 attention lowered without the U55 target has an int16 MATMUL that U55 refuses;
    lowered with it, the graph gives the same integers on the reference model."""
    trm = pytest.importorskip("tosa_reference_model")
    _, ex, plain = lowered("matmul", "a16w8", None)
    assert [f.rule for f in vela.check(plain.graph, U55)] == ["u55.int16_matmul"]
    with pytest.raises(BackendError):
        vela.run_vela(plain.graph, U55)
    _, _, for55 = lowered("matmul", "a16w8", U55)
    assert vela.check(for55.graph, U55) == []
    for scale in (1.0, 4.0, 30.0):
        xs = tuple(torch.randn(*s) * scale for s in MODELS["matmul"][1])
        qa, qb = plain.quantize_inputs(*xs), for55.quantize_inputs(*xs)
        ra, sa = trm.run(plain.graph.to_bytes(), [qa[i["name"]] for i in plain.inputs])
        rb, sb = trm.run(for55.graph.to_bytes(), [qb[i["name"]] for i in for55.inputs])
        assert "VALID" in str(sa) and "VALID" in str(sb)
        assert ra[0].dtype == rb[0].dtype and np.array_equal(ra[0], rb[0])
