"""Emit an integer TOSA graph from an exported, calibrated ATen graph: the one loop over the
nodes, the emitter's state and the small building blocks the lowerings share.

Every torch value is either a float constant (parameters, buffers and anything computed from
them only, folded in float) or a :class:`~tosaint.torch.values.QT`, a quantized activation:
a TOSA tensor of the activation dtype (int16 for a16w8, int8 for a8w8) with a symmetric
per-tensor scale.  Each ATen node with a quantized argument is lowered by its entry in
:data:`tosaint.torch.lower.LOWERINGS`; :mod:`tosaint.torch.layout` keeps CNNs in NHWC and
removes dead code.  Calibration ranges come from :mod:`tosaint.torch.calib`, and every RESCALE
multiplier from :func:`tosaint.quant.multiplier` (exact rationals).
"""
from __future__ import annotations

import operator

import numpy as np
import torch
from torch.fx.node import map_arg

from .. import quant as Q
from ..builder import GraphBuilder
from ..errors import UnsupportedOp
from ..schema.definition import DType
from ..vela.u55 import torch_hooks
from . import calib, layout
from .capture import aten_name, caller_line, constants, inplace_of, source_line, user_inputs
from .lower import LOWERINGS
from .lower.activations import TABLE_FUNCTIONS
from .lower.masks import mask_dtype
from .values import BITS, QT, SCHEMES, IntT, Unsupported, bind, f64, flatten, is_act, like


#: ops whose result depends only on the shape (and dtype) of their activation argument
SHAPE_ONLY = {"aten.zeros_like", "aten.ones_like", "aten.full_like", "aten.empty_like",
              "aten.new_zeros", "aten.new_ones", "aten.new_full", "aten.new_empty",
              "aten.sym_size", "aten.size"}
#: ops that accept a QT holding -inf where its mask is set
MASK_CONSUMERS = {"aten.softmax", "aten._softmax"}


def lowering_key(node):
    """``aten.add.Tensor`` -> ``aten.add`` (the table covers every overload)."""
    return ".".join(aten_name(node).split(".")[:2])


class Emitter:
    """Lowers one exported program; ``em.b`` is the GraphBuilder the lowerings emit into."""

    def __init__(self, ep, observer, quantization="a16w8", target=None):
        if quantization not in SCHEMES:
            raise ValueError(f"quantization must be one of {sorted(SCHEMES)}, not "
                             f"{quantization!r}")
        self.ep = ep
        self.obs = observer
        self.scheme = quantization
        self.target = target
        s = SCHEMES[quantization]
        self.adt, self.qmax, self.acc = s["adt"], s["qmax"], s["acc"]
        self.bias_bits, self.headroom = s["bias_bits"], s["headroom"]
        self.b = GraphBuilder()
        self.env = {}
        self.nodes = {}           # fx node name -> node
        self.records = {}
        self.folded = {}          # node name -> value, for nodes fused into an earlier one
        self.nhwc_of = {}         # NCHW tensor -> its NHWC twin (or transpose)
        self.twins = {}           # NCHW output -> NHWC twin computed alongside it
        self.hooks = _target_hooks(target)
        #: node -> the clamp whose range (and so whose float values) its tensor holds
        self.clamped = {}
        #: lowering for Ethos-U55/U65, which have no bool tensors, comparisons, SELECT,
        #: BILINEAR RESIZE or int16 TRANSPOSE_CONV2D: masks are int32 0/1 (same results),
        #: linear resizes and int16 transposed convolutions are CONV2Ds
        self.u55 = str(target or "").lower().startswith(("ethos-u55", "ethos-u65"))
        self.record_as = None
        self.caller = caller_line()

    # ---- calibration facts ----------------------------------------------------------------
    def amax(self, name):
        return calib.act_amax(self.obs, name, self.qmax, self.adt == DType.INT8)

    def scale_for(self, amax):
        return (amax if amax > 0 else 1.0) / self.qmax

    def out_scale(self, node):
        """The symmetric scale of ``node``; an int16 tensor whose only consumer is a saturating
        TABLE (see :data:`SATURATING`) goes without :data:`calib.HEADROOM16`."""
        a = self.amax(node.name)
        if self.adt == DType.INT16 and SATURATING_HEADROOM and _table_consumer(
                node, SATURATING) is not None:
            a /= calib.HEADROOM16
        return self.scale_for(a)

    def out_qparams(self, node):
        """(scale, zero point) of the activation that ``node`` produces.

        a16w8: symmetric (zero point 0, :meth:`out_scale`).  a8w8: affine int8 over the
        calibrated range (:func:`calib.affine_qparams`), so that a one-sided or off-centre
        tensor (exp, softmax, ReLU/ReLU6/hardswish outputs) keeps all 256 codes.  A tensor whose
        only consumer is a clamp (relu, relu6, hardtanh, clamp with constant bounds) takes the
        clamp's range: the values the clamp removes saturate in the producer's RESCALE already,
        as in a fused conv + ReLU.
        """
        if self.adt != DType.INT8:
            return self.out_scale(node), 0
        name = _clamp_consumer(node) or node.name
        if name != node.name:
            self.clamped[node.name] = name
        if not self.obs.acts.get(name):
            return self.out_scale(node), 0
        f = _table_consumer(node) if name == node.name else None
        return calib.int8_qparams(self.obs, name, f)
    def acts(self, name):
        return self.obs.acts.get(name, [])

    # ---- small emit helpers ---------------------------------------------------------------
    def rescale(self, x, ratios, out_dtype, bound_bits=None, output_zp=0, input_zp=0):
        """RESCALE ``x`` by exact ``ratios`` (one, or one per last-axis channel).

        ``input_zp`` (int8 inputs only) is subtracted first: the values then span one more bit.
        """
        in_dt = self.b.dtype(x)
        scale32 = in_dt != DType.INT48
        if bound_bits is None:
            bound_bits = BITS[in_dt] + (1 if input_zp else 0)
        rs = list(ratios) if isinstance(ratios, (list, tuple, np.ndarray)) else [ratios]
        try:
            m, s = Q.multipliers(rs, scale32, bound_bits + 1 if scale32 else 2)
        except ValueError:
            m, s = Q.multipliers(rs, scale32, 2)
        return self.b.rescale(x, m, s, out_dtype, scale32=scale32, per_channel=len(m) > 1,
                              input_zp=input_zp, output_zp=output_zp)

    def requant(self, x: QT, scale, zp=0):
        """``x`` at (``scale``, ``zp``): one RESCALE, or ``x`` itself when they are its own."""
        if scale == x.scale and zp == x.zp:
            return x
        return QT(self.rescale(x.name, Q.ratio(x.scale, den=[scale]), x.dtype,
                               input_zp=x.zp, output_zp=zp), scale, x.shape, x.dtype, zp)

    def requant_node(self, x: QT, node):
        """``x`` at the node's own quantization (:meth:`out_qparams`)."""
        return self.requant(x, *self.out_qparams(node))

    def no_zp(self, x: QT):
        """``x`` with zero point 0 (the same scale; one RESCALE when it has one)."""
        return self.requant(x, x.scale, 0) if x.zp else x

    def to_i32(self, x: QT, ratio=1):
        """``x``'s values (its zero point removed) as int32, times ``ratio``."""
        return self.rescale(x.name, ratio, DType.INT32, input_zp=x.zp)

    def to16(self, x: QT):
        return QT(self.rescale(x.name, 1, DType.INT16, input_zp=x.zp), x.scale, x.shape,
                  DType.INT16)

    def mul_act(self, node, a: QT, b: QT):
        """MUL of two activations (broadcast) -> int32, RESCALE to the node's scale.

        Operands with a zero point are first RESCALEd to int16 without it."""
        rank = len(node.meta["val"].shape)
        sy, zp = self.out_qparams(node)
        bits = 2 * BITS[self.adt]
        if a.zp or b.zp:
            a, b = self.to16(a), self.to16(b)
            bits += 2
        prod_ = self.b.mul(self.to_rank(a.name, rank), self.to_rank(b.name, rank))
        y = self.rescale(prod_, Q.ratio(a.scale, b.scale, den=[sy]), self.adt,
                         bound_bits=bits, output_zp=zp)
        shape = tuple(node.meta["val"].shape)
        return self.new(self.reshape(y, shape), sy, shape, zp=zp)

    def reduce_sum32(self, name, dims):
        for d in dims:
            name = self.b.reduce_sum(name, d)
        return name

    def reshape(self, name, shape):
        shape = tuple(int(d) for d in shape)
        if tuple(self.b.shape(name)) == shape:
            return name
        return self.b.reshape(name, shape)

    def to_rank(self, name, rank):
        s = tuple(self.b.shape(name))
        if len(s) == rank:
            return name
        return self.b.reshape(name, (1,) * (rank - len(s)) + s)

    def const_i32(self, values, rank=None):
        arr = np.asarray(values, np.int64)
        if rank is not None and arr.ndim < rank:
            arr = arr.reshape((1,) * (rank - arr.ndim) + arr.shape)
        if arr.size and (arr.min() < -(1 << 31) or arr.max() >= (1 << 31)):
            raise Unsupported("an int32 constant is out of range")
        return self.b.const(arr, DType.INT32)

    def quant_const(self, t, dtype=None, rank=None):
        """A float constant as a symmetric int16/int8 CONST: (name, scale)."""
        dtype = dtype or self.adt
        qmax = (1 << BITS[dtype]) - 1
        a = f64(t).numpy()
        if rank is not None and a.ndim < rank:
            a = a.reshape((1,) * (rank - a.ndim) + a.shape)
        amax = float(np.abs(a).max()) if a.size else 0.0
        s = (amax if amax > 0 else 1.0) / qmax
        return self.b.const(np.clip(np.round(a / s), -qmax, qmax), dtype), s

    def new(self, name, scale, shape, dtype=None, zp=0):
        return QT(name, float(scale), tuple(int(d) for d in shape), dtype or self.adt, int(zp))

    def nhwc(self, name):
        """The NHWC form of 4-D NCHW tensor ``name`` (its twin, or one TRANSPOSE)."""
        if name not in self.nhwc_of:
            self.nhwc_of[name] = self.b.transpose(name, (0, 2, 3, 1))
        return self.nhwc_of[name]

    def set_nhwc(self, nchw, nhwc):
        """Record that ``nhwc`` holds ``nchw``'s values in NHWC (computed alongside it)."""
        self.nhwc_of[nchw] = self.twins[nchw] = nhwc

    def value(self, a):
        """The emitter's value of an fx argument (nodes replaced, containers recursed)."""
        if isinstance(a, torch.fx.Node):
            return self.env[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(self.value(x) for x in a)
        if isinstance(a, dict):
            return {k: self.value(v) for k, v in a.items()}
        return a

    # ---- main loop ------------------------------------------------------------------------
    def emit(self):
        graph = self.ep.graph_module.graph
        self.nodes = {n.name: n for n in graph.nodes}
        consts = constants(self.ep)
        users = user_inputs(self.ep)
        check_supported(graph, set(users), self.caller)
        outputs = None
        for node in graph.nodes:
            if node.op == "placeholder":
                if node.name in consts:
                    self.env[node.name] = consts[node.name]
                elif node.meta["val"].is_floating_point():
                    val = node.meta["val"]
                    name = self.b.input(tuple(val.shape), self.adt, name=node.name)
                    sx, zp = self.out_qparams(node)
                    self.env[node.name] = self.new(name, sx, val.shape, zp=zp)
                elif node.meta["val"].dtype == torch.bool:     # a mask given as an input
                    shape = tuple(int(d) for d in node.meta["val"].shape)
                    dt = mask_dtype(self)
                    name = self.b.input(shape, dt, name=node.name)
                    self.env[node.name] = IntT(name, shape, dt, boolean=True)
                else:                       # lengths, indices: int32 on the TOSA side
                    shape = tuple(int(d) for d in node.meta["val"].shape)
                    name = self.b.input(shape, DType.INT32, name=node.name)
                    self.env[node.name] = IntT(name, shape, DType.INT32)
            elif node.op == "get_attr":
                self.env[node.name] = getattr(self.ep.graph_module, node.target)
            elif node.op == "call_function":
                self._call(node)
            elif node.op == "output":
                outputs = node.args[0]
        self.input_names = list(users)
        result = self._outputs(outputs)
        layout.dce(self)
        return result

    def _call(self, node):
        if node.name in self.folded:
            self.env[node.name] = self.folded[node.name]
            return
        args = self.value(node.args)
        kwargs = self.value(node.kwargs)
        flat = list(flatten(args)) + list(flatten(list(kwargs.values())))
        if lowering_key(node) in SHAPE_ONLY:     # activations stand in as zeros
            args, kwargs = map_arg((node.args, node.kwargs), self._shape_stand_in)
            flat = []
        if not any(is_act(v) for v in flat):     # constants: folded in float
            with torch.no_grad():
                self.env[node.name] = node.target(*args, **kwargs)
            return
        if node.target is operator.getitem:
            self.env[node.name] = args[0][args[1]]
            return
        op = aten_name(node)
        key = lowering_key(node)
        low = LOWERINGS[key]                    # check_supported saw every node
        where = source_line(node, self.caller)
        p = bind(node.target, args, kwargs)
        i0 = len(self.b.block.operators)
        self.record_as = None
        try:
            if not low.ints and any(isinstance(v, IntT) for v in flat):
                raise Unsupported("an integer or boolean tensor computed from the inputs as "
                                  "an operand (only shape ops, comparisons, masks and "
                                  "where/masked_fill take one)")
            if key not in MASK_CONSUMERS and any(isinstance(v, QT) and v.mask for v in flat):
                raise Unsupported("a -inf fill (masked_fill/where) must go straight into "
                                  "softmax")
            out = low.fn(self, node, p)
        except Unsupported as e:
            raise UnsupportedOp(f"torch op {op} (node {node.name!r}): {e}; at {where}") from None
        self.env[node.name] = out
        if low.nhwc and isinstance(out, QT):
            layout.replay_nhwc(self, i0, flat, out)
        ops = self.b.block.operators[i0:]
        for o in ops:
            o.location = f"{node.name}: {where}"
        rec_name = self.record_as or node.name
        if self.record_as:
            op = f"{op}+{aten_name(self.nodes[rec_name])}"
        self.records[rec_name] = dict(node=rec_name, aten=op, source=where, out=out,
                                      op_objs=list(ops), ref=self.clamped.get(rec_name))

    def _shape_stand_in(self, n):
        v = self.env[n.name]
        if not is_act(v):
            return v
        val = n.meta["val"]
        return torch.zeros(tuple(val.shape), dtype=val.dtype)

    def _outputs(self, outs):
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        result = []
        seen = set(self.b.block.inputs)
        for o in outs:
            v = self.env[o.name] if isinstance(o, torch.fx.Node) else o
            if not is_act(v):
                raise UnsupportedOp("graph outputs must depend on the inputs (found a constant "
                                    "output)")
            if isinstance(v, QT) and v.mask or isinstance(v, IntT) and v.additive:
                raise UnsupportedOp("a graph output holds -inf (a masked_fill/where mask): "
                                    "only softmax can consume it")
            name = v.name
            if name in seen:
                name = self.b.identity(name)
                v = like(v, name, v.shape)
            seen.add(name)
            self.b.output(name)
            result.append(v)
        return result


def check_supported(graph, inputs, caller=None):
    """Raise UnsupportedOp listing every node that depends on a graph input and has no
    lowering: ATen op, count, module path and the user's source line of each."""
    live = set(inputs)
    missing = {}
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        if not any(isinstance(a, torch.fx.Node) and a.name in live
                   for a in flatten(list(node.args) + list(node.kwargs.values()))):
            continue
        live.add(node.name)
        if node.target is operator.getitem or lowering_key(node) in LOWERINGS \
                or lowering_key(node) in SHAPE_ONLY:
            continue
        missing.setdefault(aten_name(node), []).append(node)
    if not missing:
        return
    n = sum(len(v) for v in missing.values())
    lines = [f"tosaint.torch cannot lower {n} node{'s' if n > 1 else ''} "
             f"({len(missing)} op{'s' if len(missing) > 1 else ''}):"]
    for op, nodes in missing.items():
        note = ""
        base = inplace_of(op)
        if base is not None:
            key = ".".join(base.split(".")[:2])
            note = (f" (in-place variant of {key}, which is supported: it could not be "
                    "replaced by its out-of-place form because the tensor it writes is "
                    "read again elsewhere)" if key in LOWERINGS else
                    f" (in-place variant of {key}, which is not supported either)")
        lines.append(f"  {op} x{len(nodes)}{note}")
        for nd in nodes[:3]:
            lines.append(f"    {nd.name}: {source_line(nd, caller)}")
        if len(nodes) > 3:
            lines.append(f"    ... and {len(nodes) - 3} more")
    raise UnsupportedOp("\n".join(lines))


#: ops that clamp to constant bounds: a producer whose only consumer is one takes its range
CLAMPS = {"aten.relu", "aten.relu6", "aten.hardtanh", "aten.clamp", "aten.clip"}


def _clamp_consumer(node):
    """The name of the clamp that is ``node``'s only consumer, or None."""
    users = list(getattr(node, "users", ()))
    if len(users) != 1 or users[0].op != "call_function" or lowering_key(users[0]) not in CLAMPS:
        return None
    u = users[0]
    if u.args[0] is not node or any(isinstance(a, torch.fx.Node)
                                    for a in list(u.args[1:]) + list(u.kwargs.values())):
        return None
    return u.name


#: a8w8: a tensor whose only consumer is the TABLE of one of these functions takes its range
#: from the errors of the function's output (:func:`calib.affine_qparams` with ``f``):
#: clipping where the function flattens costs little.  Tuning seeds 1-4, held-out inputs:
#: sigmoid +3.5 dB, tanh +3.4, reciprocal +3.3, GELU +1.3, exp +0.1, MobileNetV3 (hardswish)
#: +0.7, ViT (GELU) -0.2.  Not for SiLU and mish: the SiLU single op gained 1 dB, but
#: EfficientNet (SiLU into spatial means) lost 1.8 dB
TABLE_AWARE = {"aten.exp", "aten.sigmoid", "aten.tanh", "aten.reciprocal", "aten.rsqrt",
               "aten.sqrt", "aten.log", "aten.erf", "aten.hardsigmoid", "aten.softplus",
               "aten.elu", "aten.leaky_relu", "aten.gelu", "aten.hardswish"}


#: int16: functions that flatten towards both ends of a calibrated range, so that an input
#: past it costs little (f(v) - f(end)): their inputs need no headroom
SATURATING = {"aten.sigmoid", "aten.tanh", "aten.erf", "aten.hardsigmoid"}
SATURATING_HEADROOM = True


def _table_consumer(node, functions=None):
    """The float function (numpy float64 -> float64) of the TABLE that is ``node``'s only
    consumer, if one of ``functions`` (default :data:`TABLE_AWARE`), or None."""
    users = list(getattr(node, "users", ()))
    if len(users) != 1 or users[0].op != "call_function":
        return None
    u = users[0]
    key = lowering_key(u)
    if key not in (TABLE_AWARE if functions is None else functions) or u.args[0] is not node:
        return None
    if any(isinstance(a, torch.fx.Node) for a in list(u.args[1:]) + list(u.kwargs.values())):
        return None
    fn, p = TABLE_FUNCTIONS[key][0], bind(u.target, u.args, u.kwargs)

    def f(v):
        with torch.no_grad():
            return fn(torch.from_numpy(np.asarray(v, np.float64)), p).numpy()
    return f


def _target_hooks(target):
    """Emission hooks for a hardware target (see :func:`tosaint.vela.u55.torch_hooks`)."""
    return dict(torch_hooks(str(target).lower())) if target else {}
