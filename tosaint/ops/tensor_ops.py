"""tensor_ops operators."""
