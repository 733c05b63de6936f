"""The one error hierarchy of tosaint, rooted at :class:`TosaError`.

The classes follow the spec's three outcomes of a graph (valid, ERROR_IF, REQUIRE/unpredictable)
plus what a loader and a runtime need.  Every message names the op, the tensor and the violated
condition, so that a user can find the offending node without a debugger.
"""


class TosaError(Exception):
    """Root of every error tosaint raises on purpose."""


class SchemaError(TosaError):
    """The bytes are not a valid TOSA flatbuffer, or the graph in it is malformed.

    (wrong identifier, truncated, offsets out of range, dangling tensor names, cycles,
    data length not matching shape x dtype, absurd sizes, ...)
    """


class UnsupportedOp(TosaError):
    """An operator (or torch op) that tosaint does not implement."""


class ErrorIfViolation(TosaError):
    """A spec ERROR_IF condition holds: the graph is invalid."""


class UnsupportedTypeSignature(UnsupportedOp, ErrorIfViolation):
    """An operator whose combination of tensor types is not in the registry.

    For integer types this is also an ERROR_IF of the spec (a type combination outside the
    operator's supported-types table makes the graph invalid).
    """


class LevelLimitError(ErrorIfViolation):
    """A LEVEL_CHECK limit of the requested level is exceeded."""


class UnpredictableError(TosaError):
    """A spec REQUIRE condition failed: the result of the graph is unpredictable."""


class InputError(TosaError):
    """Graph inputs handed to run_tosa have a wrong name, dtype, shape or range."""


class BackendError(TosaError):
    """An external tool (Vela, the reference model) rejected the graph."""
