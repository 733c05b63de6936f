"""ewise_ternary operators."""
