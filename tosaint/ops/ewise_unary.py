"""ewise_unary operators."""
