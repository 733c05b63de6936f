"""CLAMP (spec chapter "Activation Functions"; the integer profile has no other activation:
integer nonlinearities go through TABLE)."""
import numpy as np

from ..dtypes import STORAGE
from ..registry import register
from ..schema.definition import DType as T
from ..schema.definition import Op
from .ewise_binary import check_same_shape, finish


@register(Op.CLAMP, {(T.INT8, T.INT8): "PRO-INT", (T.INT16, T.INT16): "EXT-INT16"},
          operands=("input",))
def clamp(node):
    shape = check_same_shape(node)
    dtype = node.outputs[0].dtype
    st = STORAGE[dtype]
    bounds = []
    for field in ("min_val", "max_val"):
        raw = node.attrs.get(field) or b""
        if len(raw) < st.itemsize:
            node.error(f"{field} holds {len(raw)} bytes, expected {st.itemsize} ({dtype.name})")
        # raw little-endian bytes of one in_out_t value
        bounds.append(np.frombuffer(bytes(raw[:st.itemsize]), st.newbyteorder("<"))[0].astype(st))
    lo, hi = bounds
    if hi < lo:
        node.error(f"max_val {int(hi)} < min_val {int(lo)}")
    return lambda x: finish(np.minimum(np.maximum(x, lo), hi), dtype, shape)
