"""The compiled side gathered in one namespace (``impl="numba"``): every kernel the op layer
calls, imported explicitly from the module that owns it (Numba kernels, and vectorised NumPy
where that is as fast).  Importing it imports Numba.  ``tosaint.kernels.spec`` lists the same
names for the spec twins and ``tosaint.kernels.fast`` for the default ``impl="auto"``, which
picks one of the two per call; a test checks that all three export the same names with the
same arguments.
"""
from .conv_dense import conv2d, conv2d_rescale, conv3d, conv_weights, transpose_conv2d
from .conv_depthwise import depthwise_conv2d, depthwise_conv2d_rescale, depthwise_weights
from .data_layout import concat, pad, reshape, reverse, slice_, tile, transpose
from ._epilogue import finalize
from .ewise_binary import table16, table16_lut
from .image import resize
from .matmul import matmul
from .pooling import avg_pool2d, max_pool2d
from .reduction import argmax, reduce_bool, reduce_minmax, reduce_sum
from .scale import apply_scale_16, apply_scale_32, count_leading_zeros, reciprocal_scale
from .scatter_gather import gather, scatter
from .type_conversion import rescale, rescale_exact

__all__ = ["apply_scale_16", "apply_scale_32", "argmax", "avg_pool2d", "concat", "conv2d",
           "conv2d_rescale", "conv3d", "conv_weights", "count_leading_zeros", "depthwise_conv2d",
           "depthwise_conv2d_rescale", "depthwise_weights", "finalize", "gather", "matmul",
           "max_pool2d", "pad", "reciprocal_scale", "reduce_bool", "reduce_minmax",
           "reduce_sum", "rescale", "rescale_exact", "reshape", "resize", "reverse", "scatter",
           "slice_", "table16", "table16_lut", "tile", "transpose", "transpose_conv2d"]
