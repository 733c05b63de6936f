"""TOSA flatbuffer schema (``definition``), reader and writer; installed as ``tosaint.schema``."""
from .definition import (ATTRIBUTES, BlockShape, BlockSize, CompatibilityFeature, DType,
                         NanPropagationMode, Op, ResizeMode, RoundingMode)

__all__ = ["ATTRIBUTES", "BlockShape", "BlockSize", "CompatibilityFeature", "DType",
           "NanPropagationMode", "Op", "ResizeMode", "RoundingMode"]
