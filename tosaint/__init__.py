"""tosaint: a bit-exact Numba TOSA interpreter for int16/int8 (a16w8) quantized networks."""
from .errors import (ErrorIfViolation, InputError, InternalError, ResourceLimitError,
                     SchemaError, TosaError, UnpredictableError, UnsupportedOp)
from .graph import Block, Graph, Operator, Region, Tensor, Version
from .schema.definition import DType, Op, RoundingMode
from .schema.loader import load
from .interpreter import Diagnostic, Plan, RunResult, prepare, run_tosa, supported_ops, validate
from .golden import golden  # noqa: E402  (the function; the module stays tosaint.golden in sys.modules)

__version__ = "0.1.0"


def save(graph, path, version=None):
    """Write ``graph`` to ``path`` as a ``.tosa`` flatbuffer."""
    graph.save(path, version=version)


__all__ = ["Block", "DType", "Diagnostic", "ErrorIfViolation", "Graph", "InputError",
           "InternalError", "Op", "Operator", "Plan", "Region", "ResourceLimitError",
           "RoundingMode", "RunResult", "SchemaError", "Tensor", "TosaError",
           "UnpredictableError", "UnsupportedOp", "Version", "golden", "load", "prepare",
           "run_tosa", "save", "supported_ops", "validate"]
