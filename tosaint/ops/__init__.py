"""Operator implementations (validate + prepare + call a kernel), one module per spec chapter.

Importing this package fills ``tosaint.registry.REGISTRY``; the list is explicit.
"""
from . import (activation_funcs, comparison, control_flow, data_layout, data_nodes,  # noqa: F401
               ewise_binary, ewise_ternary, ewise_unary, image, pooling, reduction,
               scatter_gather,
               tensor_ops, type_conversion, unsupported, variables)
