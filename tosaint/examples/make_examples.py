"""Build the bundled example graphs with GraphBuilder and write them next to this file.

    python -m tosaint.examples.make_examples          (or: python tosaint/examples/make_examples.py)

``a16w8_conv.tosa``: an a16w8 block as an Ethos-U int16 network uses it:
int16 input [1,8,8,4] -> CONV2D int16 x int8 -> int48 (int48 bias, pad 1)
-> RESCALE scale16 per channel -> int16 -> TABLE int16 (513 entries, a tanh) -> int32 (16.7)
-> RESCALE scale32 -> int16 -> MAX_POOL2D 2x2 -> RESHAPE [1, 128].
``a16w8_conv_input.npy`` is a seeded int16 input; ``a16w8_conv_expected.npy`` is the output the
official TOSA reference model gives for it (written only when tosa-tools is installed).
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def tanh_table():
    """The 513-entry int16 TABLE of tanh: entry i is f(i-256) for an input step of 128/32768."""
    i = np.arange(-256, 257)
    return np.clip(np.round(32767 * np.tanh(i / 64.0)), -32768, 32767).astype(np.int16)


def a16w8_conv(seed=0):
    """(graph, [input]) of the bundled a16w8 example."""
    from tosaint.builder import GraphBuilder
    from tosaint.schema.definition import DType

    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input((1, 8, 8, 4), DType.INT16, name="input")
    w = b.const(rng.integers(-127, 128, (8, 3, 3, 4)), DType.INT8, name="conv_weight")
    bias = b.const(rng.integers(-(1 << 20), 1 << 20, 8), DType.INT48, name="conv_bias")
    acc = b.conv2d(x, w, bias, pad=1, name="conv")                         # int48
    mult = [16384, 18000, 20000, 22000, 24000, 26000, 28000, 30000]          # ~2^-12 each
    y = b.rescale(acc, mult, [26] * 8, DType.INT16, name="conv_rescaled")    # scale16
    t = b.table(y, tanh_table(), name="tanh")                              # int32, 16.7
    y = b.rescale(t, 1 << 30, 37, DType.INT16, name="tanh_rescaled")         # /128, scale32
    y = b.max_pool2d(y, 2, stride=2, name="pool")
    b.output(b.reshape(y, (1, 128), name="output"))
    x_val = rng.integers(-32768, 32768, (1, 8, 8, 4)).astype(np.int16)
    return b.build(), [x_val]


def main(out_dir=HERE):
    graph, inputs = a16w8_conv()
    graph.save(os.path.join(out_dir, "a16w8_conv.tosa"))
    np.save(os.path.join(out_dir, "a16w8_conv_input.npy"), inputs[0])
    from tosaint.oracle import ORACLE_INSTALL, available, reference_run
    if not available():
        print(f"the reference model is not installed ({ORACLE_INSTALL}): no expected output "
              "written")
        return 0
    status, outs = reference_run(graph, inputs)
    if status != "TOSA_VALID":
        print(f"reference model: {status}", file=sys.stderr)
        return 1
    outs = [outs[n] for n in graph.outputs]
    np.save(os.path.join(out_dir, "a16w8_conv_expected.npy"), outs[0])
    print(f"wrote a16w8_conv.tosa, its input and the reference output to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
