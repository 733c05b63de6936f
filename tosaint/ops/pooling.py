"""Pooling and ARGMAX (spec chapter "Tensor Operators")."""
