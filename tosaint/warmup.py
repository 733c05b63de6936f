"""Ahead-of-time compilation: ``warmup()`` runs one tiny graph per kernel path (each tensor op
with int8 and int16 inputs, fused and unfused epilogues, small and large RESCALEs, pooling,
GATHER/SCATTER, RESIZE) so that every Numba kernel is compiled for the types real graphs pass,
into Numba's on-disk cache.  Run it once when building an image or a CI cache; later processes
then start warm.

The graphs go through the ordinary op layer, so the specialisations compiled are exactly the
ones a run asks for.
"""
import time

import numpy as np

from .builder import GraphBuilder
from .schema.definition import DType, Op, ResizeMode, RoundingMode

_WIDE = {DType.INT8: DType.INT32, DType.INT16: DType.INT48}


def _rng_array(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def _graphs():
    """(name, graph, inputs) for every kernel path, int8 and int16 activations."""
    rng = np.random.default_rng(0)
    for dt, np_dt in ((DType.INT8, np.int8), (DType.INT16, np.int16)):
        tag = dt.name.lower()
        acc = _WIDE[dt]
        x4 = _rng_array(rng, (1, 6, 6, 4), np_dt)
        w = _rng_array(rng, (4, 3, 3, 4), np.int8)
        w1 = _rng_array(rng, (4, 1, 1, 4), np.int8)
        wd = _rng_array(rng, (3, 3, 4, 1), np.int8)
        bias = np.zeros(4, np.int64)
        for kind in ("conv2d", "conv2d_1x1", "depthwise_conv2d"):
            for fused in (False, True):
                b = GraphBuilder()
                x = b.input(x4.shape, dt, name="x")
                bi = b.const(bias, acc)
                if kind == "conv2d":
                    y = b.conv2d(x, b.const(w, DType.INT8), bi, pad=1)
                elif kind == "conv2d_1x1":
                    y = b.conv2d(x, b.const(w1, DType.INT8), bi)
                else:
                    y = b.depthwise_conv2d(x, b.const(wd, DType.INT8), bi, pad=1)
                if fused:
                    y = b.rescale(y, [1 << 14] * 4, [20] * 4, dt, per_channel=True)
                b.output(y)
                yield f"{kind}{'+rescale' if fused else ''} {tag}", b.build(), [x4]
        # channel multiplier 2: the general depthwise path (one tap at a time)
        for fused in (False, True):
            b = GraphBuilder()
            x = b.input(x4.shape, dt, name="x")
            y = b.depthwise_conv2d(x, b.const(_rng_array(rng, (3, 3, 4, 2), np.int8), DType.INT8),
                                   b.const(np.zeros(8, np.int64), acc), pad=1)
            if fused:
                y = b.rescale(y, [1 << 14] * 8, [20] * 8, dt, per_channel=True)
            b.output(y)
            yield f"depthwise_conv2d m2{'+rescale' if fused else ''} {tag}", b.build(), [x4]
        b = GraphBuilder()
        x = b.input(x4.shape, dt, name="x")
        b.output(b.transpose_conv2d(x, b.const(w, DType.INT8), b.const(bias, acc), stride=2))
        yield f"transpose_conv2d {tag}", b.build(), [x4]
        b = GraphBuilder()
        x5 = _rng_array(rng, (1, 3, 4, 4, 2), np_dt)
        x = b.input(x5.shape, dt, name="x")
        b.output(b.conv3d(x, b.const(_rng_array(rng, (2, 2, 2, 2, 2), np.int8), DType.INT8),
                          b.const(np.zeros(2, np.int64), acc)))
        yield f"conv3d {tag}", b.build(), [x5]
        b = GraphBuilder()
        a3, b3 = _rng_array(rng, (2, 3, 5), np_dt), _rng_array(rng, (2, 5, 4), np_dt)
        y = b.matmul(b.input(a3.shape, dt, name="a"), b.input(b3.shape, dt, name="b"))
        b.output(b.rescale(y, 1 << 14, 30, dt))
        yield f"matmul+rescale {tag}", b.build(), [a3, b3]
        b = GraphBuilder()
        x = b.input(x4.shape, dt, name="x")
        b.output(b.avg_pool2d(x, 3, pad=1), b.max_pool2d(x, 3, pad=1),
                 b.rescale(x, 1 << 30, 31, dt, rounding_mode=RoundingMode.INEXACT_ROUND))
        yield f"pooling, small rescale {tag}", b.build(), [x4]
        # large RESCALEs run on their own types (small ones share one int64 specialisation)
        big = _rng_array(rng, (1, 130, 128), np_dt)
        b = GraphBuilder()
        x = b.input(big.shape, dt, name="x")
        y = b.rescale(x, 1 << 30, 31, DType.INT32)
        b.output(b.rescale(x, 1 << 30, 31, dt, rounding_mode=RoundingMode.DOUBLE_ROUND),
                 b.rescale(y, 1 << 30, 31, dt),
                 b.rescale(x, 1 << 30, 31, dt, rounding_mode=RoundingMode.INEXACT_ROUND))
        yield f"rescale large {tag}", b.build(), [big]
        b = GraphBuilder()
        # int16-range values: no RESCALE REQUIRE fails
        wide = big.astype(np.int64 if acc == DType.INT48 else np.int32)
        x = b.input(big.shape, acc, name="x")
        b.output(b.rescale(x, 1 << 14, 20, dt, scale32=acc != DType.INT48))
        yield f"rescale large {acc.name.lower()}", b.build(), [wide]
        b = GraphBuilder()
        vals = _rng_array(rng, (1, 5, 3), np_dt)
        v = b.input(vals.shape, dt, name="values")
        idx = b.const(np.array([[4, 0]], np.int32), DType.INT32)
        g = b.op(Op.GATHER, [v, idx], (1, 2, 3), dt)
        b.output(g, b.op(Op.SCATTER, [v, idx, g], vals.shape, dt))
        yield f"gather/scatter {tag}", b.build(), [vals]
        b = GraphBuilder()
        x = b.input(x4.shape, dt, name="x")
        for mode in (ResizeMode.NEAREST, ResizeMode.BILINEAR):
            out_t = dt if mode == ResizeMode.NEAREST else acc
            b.output(b.resize(x, (4, 2, 4, 2), (0, 0), (2, 2), mode=mode, out_dtype=out_t))
        yield f"resize {tag}", b.build(), [x4]


def _dispatchers():
    """{name: Numba dispatcher} of every kernel module (not the helpers inlined into their
    callers: those have no code of their own)."""
    from numba.core.registry import CPUDispatcher
    from .kernels import (_epilogue, conv_dense, conv_depthwise, image, pooling, scale,
                          scatter_gather, type_conversion)
    found = {}
    for mod in (_epilogue, conv_dense, conv_depthwise, image, pooling, scale, scatter_gather,
                type_conversion):
        for name, obj in vars(mod).items():
            if (isinstance(obj, CPUDispatcher) and obj.__module__ == mod.__name__
                    and obj.targetoptions.get("inline") != "always"):
                found[f"{mod.__name__.rsplit('.', 1)[1]}.{name}"] = obj
    return found


def warmup(impl="numba"):
    """Compile (or load from Numba's cache) every JIT kernel for the types real graphs use.

    Returns {"graphs": how many tiny graphs ran, "kernels": how many kernels have compiled
    code, "signatures": their compiled specialisations, "seconds": the time taken,
    "per_graph": {graph name: seconds}, "per_kernel": {kernel: specialisations}}.
    ``impl="spec"`` has nothing to compile and returns at once.
    """
    from .interpreter import run_tosa
    t0 = time.perf_counter()
    per_graph = {}
    if impl == "spec":
        return {"graphs": 0, "kernels": 0, "signatures": 0, "seconds": 0.0, "per_graph": {},
                "per_kernel": {}}
    if impl not in ("numba", "auto"):          # "auto" runs these kernels once promoted
        raise ValueError(f"impl must be 'numba', 'auto' or 'spec', not {impl!r}")
    impl = "numba"
    for name, graph, inputs in _graphs():
        t = time.perf_counter()
        run_tosa(graph, inputs, impl=impl)
        per_graph[name] = round(time.perf_counter() - t, 3)
    from .kernels import compiled
    compiled.apply_scale_16(1, 1, 2)        # the scale helpers' own Python-callable forms
    compiled.apply_scale_32(1, 1, 2, False)
    per_kernel = {name: len(d.signatures) for name, d in sorted(_dispatchers().items())
                  if d.signatures}
    return {"graphs": len(per_graph), "kernels": len(per_kernel),
            "signatures": sum(per_kernel.values()),
            "seconds": round(time.perf_counter() - t0, 2), "per_graph": per_graph,
            "per_kernel": per_kernel}
