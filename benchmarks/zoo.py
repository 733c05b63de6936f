"""Model-zoo-style torch models and their calibration / evaluation inputs.

The models are written the way the public model zoos write them (``nn.ReLU(inplace=True)``,
``out += identity``, functional calls, ``nn.MultiheadAttention``, masks built from a
``lengths`` input), at small default sizes so that each one lowers and runs in seconds:

=================  ===========================================================================
``resnet``         BasicBlock ResNet (stem conv + max pool, 1x1 strided downsample, ``+=``)
``mobilenet_v2``   inverted residuals, ReLU6(inplace=True), linear bottleneck
``mobilenet_v3``   hardswish, squeeze-excitation with hardsigmoid, functional pooling
``efficientnet``   MBConv with SiLU, sigmoid squeeze-excitation, stochastic depth (eval: identity)
``vit``            patch conv, class token concat, positional add, nn.MultiheadAttention, GELU MLP
``conformer``      forward(x, lengths): key-padding mask from lengths, masked softmax, GLU,
                   depthwise Conv1d, BatchNorm1d, SiLU feed-forward halves
``emg_tcn``        strided Conv1d, BatchNorm1d, AdaptiveAvgPool1d, ConvTranspose1d, interpolate
=================  ===========================================================================

``build(name, seed=0, **sizes)`` gives the model in eval mode with weights and norm affine
parameters drawn from ``seed`` and BatchNorm running statistics measured, as training leaves
them, on a seeded batch of inputs (the global torch RNG is left as it was).  So the outputs
depend on the input the way a trained network's do: on the benchmark's randn evaluation inputs
the input-dependent part (the variance across inputs) is 0.3-0.7 of the output power for every
model (drawn statistics left the deep CNNs' logits a constant set by the BatchNorm biases, the
input-dependent part 1e-13 to 1e-9);
``inputs(name, seed, n, dist)`` gives ``n`` input tuples from a seed and a distribution
("randn", "uniform" or "heavy", a Student-t with 3 degrees of freedom scaled to unit variance).
``resnet18()`` is the ResNet-18-sized CNN (11.2 M parameters) used for the lowering-time target.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ZOO", "build", "inputs", "example", "resnet18", "DISTRIBUTIONS"]


# ---- ResNet --------------------------------------------------------------------------------
def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, cout, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, layers=(1, 1, 1, 1), width=16, num_classes=10):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8, num_classes)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(planes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


# ---- MobileNetV2 ---------------------------------------------------------------------------
def _make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNAct(nn.Sequential):
    def __init__(self, cin, cout, kernel=3, stride=1, groups=1, act=nn.ReLU6):
        layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups,
                            bias=False), nn.BatchNorm2d(cout)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand_ratio):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(cin, hidden, kernel=1))
        layers += [ConvBNAct(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    # t (expansion), c (channels), n (repeats), s (stride)
    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1))

    def __init__(self, width_mult=0.25, num_classes=10, last_channel=128):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        features = [ConvBNAct(3, cin, stride=2)]
        for t, c, n, s in self.SETTING:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNAct(cin, last_channel, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last_channel, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


# ---- MobileNetV3 ---------------------------------------------------------------------------
class SqueezeExcitation(nn.Module):
    def __init__(self, cin, squeeze, activation=nn.ReLU, scale_activation=nn.Hardsigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(cin, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, cin, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, x):
        scale = self.avgpool(x)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)

    def forward(self, x):
        scale = self._scale(x)
        return scale * x


class V3Block(nn.Module):
    def __init__(self, cin, kernel, expanded, cout, use_se, use_hs, stride):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        act = nn.Hardswish if use_hs else nn.ReLU
        layers = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, kernel=1, act=act))
        layers.append(ConvBNAct(expanded, expanded, kernel=kernel, stride=stride,
                                groups=expanded, act=act))
        if use_se:
            layers.append(SqueezeExcitation(expanded, _make_divisible(expanded // 4)))
        layers.append(ConvBNAct(expanded, cout, kernel=1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        result = self.block(x)
        if self.use_res_connect:
            result += x
        return result


class MobileNetV3(nn.Module):
    # kernel, expanded, out, SE, hardswish, stride (a shortened "small" configuration)
    SETTING = ((3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2),
               (3, 88, 24, False, False, 1), (5, 96, 40, True, True, 2),
               (5, 240, 40, True, True, 1), (5, 144, 48, True, True, 1))

    def __init__(self, width_mult=0.5, num_classes=10, last_channel=128):
        super().__init__()
        cin = _make_divisible(16 * width_mult)
        layers = [ConvBNAct(3, cin, stride=2, act=nn.Hardswish)]
        for k, e, c, se, hs, s in self.SETTING:
            cout = _make_divisible(c * width_mult)
            layers.append(V3Block(cin, k, _make_divisible(e * width_mult), cout, se, hs, s))
            cin = cout
        last_conv = 6 * cin
        layers.append(ConvBNAct(cin, last_conv, kernel=1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(last_conv, last_channel),
                                        nn.Hardswish(inplace=True), nn.Dropout(0.2, inplace=True),
                                        nn.Linear(last_channel, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# ---- EfficientNet --------------------------------------------------------------------------
class StochasticDepth(nn.Module):
    """Drops whole residual branches while training; the identity in eval."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype,
                           device=x.device).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class MBConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand_ratio, sd_prob):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        expanded = _make_divisible(cin * expand_ratio)
        layers = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, kernel=1, act=nn.SiLU))
        layers.append(ConvBNAct(expanded, expanded, kernel=kernel, stride=stride,
                                groups=expanded, act=nn.SiLU))
        layers.append(SqueezeExcitation(expanded, max(1, cin // 4), activation=nn.SiLU,
                                        scale_activation=nn.Sigmoid))
        layers.append(ConvBNAct(expanded, cout, kernel=1, act=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x):
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += x
        return result


class EfficientNet(nn.Module):
    # expand, kernel, stride, out, repeats (a shortened B0 table)
    SETTING = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 1))

    def __init__(self, width_mult=0.5, num_classes=10, sd_prob=0.2):
        super().__init__()
        cin = _make_divisible(32 * width_mult)
        layers = [ConvBNAct(3, cin, stride=2, act=nn.SiLU)]
        total = sum(r for *_, r in self.SETTING)
        k = 0
        for e, ks, s, c, r in self.SETTING:
            cout = _make_divisible(c * width_mult)
            for i in range(r):
                layers.append(MBConv(cin, cout, ks, s if i == 0 else 1, e,
                                     sd_prob * k / total))
                cin = cout
                k += 1
        last = 4 * cin
        layers.append(ConvBNAct(cin, last, kernel=1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=0.2, inplace=True),
                                        nn.Linear(last, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# ---- Vision Transformer --------------------------------------------------------------------
class MLPBlock(nn.Sequential):
    def __init__(self, dim, hidden, dropout=0.0):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, dim), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    def __init__(self, heads, dim, mlp_dim, dropout=0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=dropout,
                                                    batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, mlp_dim, dropout)

    def forward(self, input):
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x)
        x = x + input
        y = self.ln_2(x)
        y = self.mlp(y)
        return x + y


class VisionTransformer(nn.Module):
    def __init__(self, image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32,
                 mlp_dim=64, num_classes=10):
        super().__init__()
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, patch_size, stride=patch_size)
        seq = (image_size // patch_size) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, seq, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(*[EncoderBlock(num_heads, hidden_dim, mlp_dim)
                                      for _ in range(num_layers)])
        self.ln = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.heads = nn.Sequential(nn.Linear(hidden_dim, num_classes))

    def _process_input(self, x):
        n, c, h, w = x.shape
        p = self.patch_size
        x = self.conv_proj(x)
        x = x.reshape(n, self.hidden_dim, (h // p) * (w // p))
        return x.permute(0, 2, 1)

    def forward(self, x):
        x = self._process_input(x)
        n = x.shape[0]
        batch_class_token = self.class_token.expand(n, -1, -1)
        x = torch.cat([batch_class_token, x], dim=1)
        x = x + self.pos_embedding
        x = self.ln(self.layers(self.dropout(x)))
        x = x[:, 0]
        return self.heads(x)


# ---- Conformer (torchaudio style) ----------------------------------------------------------
def _lengths_to_padding_mask(lengths, max_length):
    """True where a frame is padding (frame index >= the sequence's length)."""
    return torch.arange(max_length, device=lengths.device)[None, :] >= lengths[:, None]


class FeedForwardModule(nn.Module):
    def __init__(self, dim, hidden, dropout=0.0):
        super().__init__()
        self.sequential = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden, bias=True),
                                        nn.SiLU(), nn.Dropout(dropout),
                                        nn.Linear(hidden, dim, bias=True), nn.Dropout(dropout))

    def forward(self, x):
        return self.sequential(x)


class ConvolutionModule(nn.Module):
    def __init__(self, dim, channels, kernel, dropout=0.0):
        super().__init__()
        self.layer_norm = nn.LayerNorm(dim)
        self.sequential = nn.Sequential(
            nn.Conv1d(dim, 2 * channels, 1),
            nn.GLU(dim=1),
            nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2, groups=channels),
            nn.BatchNorm1d(channels),
            nn.SiLU(),
            nn.Conv1d(channels, dim, 1),
            nn.Dropout(dropout))

    def forward(self, x):                       # [B, T, D]
        x = self.layer_norm(x)
        x = x.transpose(1, 2)
        x = self.sequential(x)
        return x.transpose(1, 2)


class ConformerLayer(nn.Module):
    def __init__(self, dim, ffn_dim, heads, kernel, dropout=0.0):
        super().__init__()
        self.ffn1 = FeedForwardModule(dim, ffn_dim, dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)
        self.self_attn_dropout = nn.Dropout(dropout)
        self.conv_module = ConvolutionModule(dim, dim, kernel, dropout)
        self.ffn2 = FeedForwardModule(dim, ffn_dim, dropout)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, input, key_padding_mask):     # input: [T, B, D]
        residual = input
        x = self.ffn1(input)
        x = x * 0.5 + residual
        residual = x
        x = self.self_attn_layer_norm(x)
        x, _ = self.self_attn(query=x, key=x, value=x, key_padding_mask=key_padding_mask,
                              need_weights=False)
        x = self.self_attn_dropout(x)
        x = x + residual
        residual = x
        x = x.transpose(0, 1)
        x = self.conv_module(x)
        x = x.transpose(0, 1)
        x = residual + x
        residual = x
        x = self.ffn2(x)
        x = x * 0.5 + residual
        x = self.final_layer_norm(x)
        return x


class Conformer(nn.Module):
    """forward(input [B, T, D], lengths [B] int64) -> (output [B, T, D], lengths)."""

    def __init__(self, input_dim=32, num_heads=2, ffn_dim=64, num_layers=2,
                 depthwise_conv_kernel_size=7):
        super().__init__()
        self.conformer_layers = nn.ModuleList([
            ConformerLayer(input_dim, ffn_dim, num_heads, depthwise_conv_kernel_size)
            for _ in range(num_layers)])

    def forward(self, input, lengths):
        encoder_padding_mask = _lengths_to_padding_mask(lengths, input.shape[1])
        x = input.transpose(0, 1)
        for layer in self.conformer_layers:
            x = layer(x, encoder_padding_mask)
        return x.transpose(0, 1), lengths


# ---- EMG / audio temporal conv net ---------------------------------------------------------
class TCNBlock(nn.Module):
    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2)
        self.bn = nn.BatchNorm1d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class EMGTCN(nn.Module):
    """Multi-channel EMG in [B, C, T]: a strided conv encoder, a pooled context branch, a
    transposed-conv decoder, upsampled back to T, plus a per-window class head."""

    def __init__(self, channels=8, width=16, num_classes=6, length=128):
        super().__init__()
        self.enc1 = TCNBlock(channels, width, 5, 2)
        self.enc2 = TCNBlock(width, 2 * width, 5, 2)
        self.enc3 = TCNBlock(2 * width, 2 * width, 3, 1)
        self.context = nn.AdaptiveAvgPool1d(4)
        self.ctx_fc = nn.Linear(4 * 2 * width, 2 * width)
        self.up = nn.ConvTranspose1d(2 * width, width, 4, stride=2, padding=1)
        self.bn_up = nn.BatchNorm1d(width)
        self.dropout = nn.Dropout(0.1)
        self.out_conv = nn.Conv1d(width, num_classes, 1)
        self.length = length

    def forward(self, x):
        h = self.enc1(x)
        h = self.enc2(h)
        h = h + self.enc3(h)
        c = torch.flatten(self.context(h), 1)
        c = F.relu(self.ctx_fc(c))
        h = h + c.unsqueeze(-1)
        h = F.relu(self.bn_up(self.up(h)), inplace=True)
        h = self.dropout(h)
        h = F.interpolate(h, size=x.shape[-1], mode="linear", align_corners=False)
        return self.out_conv(h)


# ---- registry ------------------------------------------------------------------------------
#: name -> (model class, default keyword sizes, input shapes (without the lengths input))
ZOO = {
    "resnet": (ResNet, dict(layers=(1, 1, 1, 1), width=16), [(1, 3, 32, 32)]),
    "mobilenet_v2": (MobileNetV2, dict(width_mult=0.25), [(1, 3, 32, 32)]),
    "mobilenet_v3": (MobileNetV3, dict(width_mult=0.5), [(1, 3, 32, 32)]),
    "efficientnet": (EfficientNet, dict(width_mult=0.5), [(1, 3, 32, 32)]),
    "vit": (VisionTransformer, dict(), [(1, 3, 32, 32)]),
    "conformer": (Conformer, dict(), [(2, 24, 32)]),
    "emg_tcn": (EMGTCN, dict(), [(1, 8, 128)]),
}

DISTRIBUTIONS = ("randn", "uniform", "heavy")


def _randomise_norms(model, gen):
    """Non-trivial norm affine parameters (fresh ones are 1/0) and a small class token (a large
    constant one would dominate the ViT's class output, as fixed BatchNorm statistics did the
    CNNs')."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(0.7 + 0.6 * torch.rand(c, generator=gen))
                m.bias.copy_(0.2 * torch.randn(c, generator=gen))
            elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(0.7 + 0.6 * torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, VisionTransformer):
                m.class_token.copy_(0.02 * torch.randn(m.class_token.shape, generator=gen))


def _fit_norm_statistics(model, name, seed, n=16):
    """BatchNorm running statistics measured on data, as training leaves them: ``n`` seeded
    randn inputs (not the benchmark's calibration or evaluation draws) go through the model in
    one batch with only the BatchNorm layers in train mode (cumulative average,
    ``momentum=None``), so every layer sees normalised activations and the output keeps
    depending on the input (drawn statistics let the signal die out in deep CNNs, leaving the
    logits a constant set by the BatchNorm biases)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    batch = tuple(torch.cat(xs) for xs in zip(*inputs(name, seed + 54321, n)))
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        model(*batch)
    for m in norms:
        m.momentum = 0.1


def build(name, seed=0, **sizes):
    """The zoo model ``name`` in eval mode, its weights drawn from ``seed``."""
    cls, defaults, _ = ZOO[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(**{**defaults, **sizes})
        _randomise_norms(model, torch.Generator().manual_seed(seed + 12345))
        _fit_norm_statistics(model, name, seed)
    return model.eval()


def resnet18(seed=0, num_classes=10):
    """A ResNet-18-sized CNN: BasicBlock layers (2, 2, 2, 2), width 64 (11.2 M weights)."""
    return build("resnet", seed, layers=(2, 2, 2, 2), width=64, num_classes=num_classes)


def _draw(shape, gen, dist):
    if dist == "randn":
        return torch.randn(shape, generator=gen)
    if dist == "uniform":
        return (torch.rand(shape, generator=gen) * 2 - 1) * math.sqrt(3.0)
    if dist == "heavy":       # Student-t, 3 degrees of freedom, unit variance
        z = torch.randn(shape, generator=gen)
        chi2 = (torch.randn((3,) + tuple(shape), generator=gen) ** 2).sum(0)
        return z / torch.sqrt(chi2 / 3) / math.sqrt(3.0)
    raise ValueError(f"unknown distribution {dist!r}; one of {DISTRIBUTIONS}")


def inputs(name, seed=0, n=8, dist="randn", shapes=None):
    """``n`` input tuples for zoo model ``name`` (the conformer gets int64 lengths too)."""
    shapes = shapes or ZOO[name][2]
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        xs = tuple(_draw(s, gen, dist) for s in shapes)
        if name == "conformer":
            b, t = shapes[0][0], shapes[0][1]
            lengths = torch.randint(t // 2, t + 1, (b,), generator=gen)
            lengths[0] = t                     # the longest sequence fills the batch
            xs = xs + (lengths.to(torch.int64),)
        out.append(xs)
    return out


def example(name, seed=0):
    """One input tuple (for torch.export)."""
    return inputs(name, seed, 1)[0]
