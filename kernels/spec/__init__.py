"""The spec twins: NumPy/Python transcriptions of the spec pseudocode, one module per spec
chapter, gathered here under the same names and arguments as ``tosaint.kernels.fast``.
"""
from .data_layout import concat, pad, reshape, reverse, slice_, tile, transpose
from .ewise_binary import table16, table16_lut
from .image import resize
from .pooling import argmax, avg_pool2d, max_pool2d
from .reduction import reduce_bool, reduce_minmax, reduce_sum
from .scale import apply_scale_16, apply_scale_32, count_leading_zeros, reciprocal_scale
from .scatter_gather import gather, scatter
from .tensor_ops import (conv2d, conv2d_rescale, conv3d, conv_weights, depthwise_conv2d,
                         depthwise_conv2d_rescale, depthwise_weights, finalize, matmul,
                         transpose_conv2d)
from .type_conversion import rescale, rescale_exact

__all__ = ["apply_scale_16", "apply_scale_32", "argmax", "avg_pool2d", "concat", "conv2d",
           "conv2d_rescale", "conv3d", "conv_weights", "count_leading_zeros", "depthwise_conv2d",
           "depthwise_conv2d_rescale", "depthwise_weights", "finalize", "gather", "matmul",
           "max_pool2d", "pad", "reciprocal_scale", "reduce_bool", "reduce_minmax",
           "reduce_sum", "rescale", "rescale_exact", "reshape", "resize", "reverse", "scatter",
           "slice_", "table16", "table16_lut", "tile", "transpose", "transpose_conv2d"]
