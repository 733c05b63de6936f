"""The TOSA flatbuffer schema, written down as data.

This is tosaint's own definition of the ``.tosa`` file format: TOSA 1.0 plus everything the
2026.x serializers append (software version, serialization compatibility, tensor offset/size,
block-scale fields, ops up to MATMUL_T).  Enum values and field order are facts of the format;
everything that reads or writes a file (``schema.reader``, ``schema.writer``) is driven by the
tables below, so a new field is one line here.

A table is a tuple of ``(field_name, type)`` in slot order (slot i lives at vtable offset
4 + 2*i).  Types:

* scalars: ``"bool" "int32" "uint32" "uint64"``; an enum name means a uint32 scalar of that enum
* ``"string"``
* ``"[int32]" "[ubyte]" "[string]"``: vectors; ``"[Name]"`` is a vector of tables ``Name``
* ``"Name"``: a sub-table;  ``"union"``: the Attribute union (type byte + table)

Default values (flatbuffers omits a field equal to its default) are in ``DEFAULTS``.
"""
from enum import IntEnum

FILE_IDENTIFIER = b"TOSA"


class DType(IntEnum):
    UNKNOWN = 0
    BOOL = 1
    INT4 = 2
    INT8 = 3
    INT16 = 4
    INT32 = 5
    INT48 = 6
    FP32 = 7
    FP16 = 8
    BF16 = 9
    SHAPE = 10
    FP8E4M3 = 11
    FP8E5M2 = 12
    FP6E2M3 = 13
    FP6E3M2 = 14
    FP4E2M1 = 15
    FP8UE8M0 = 16
    INT64 = 17
    MXINT8 = 18


class ResizeMode(IntEnum):
    UNKNOWN = 0
    NEAREST = 1
    BILINEAR = 2


class NanPropagationMode(IntEnum):
    UNKNOWN = 0
    PROPAGATE = 1
    IGNORE = 2


class RoundingMode(IntEnum):
    UNKNOWN = 0
    SINGLE_ROUND = 1
    INEXACT_ROUND = 2
    DOUBLE_ROUND = 3


class BlockSize(IntEnum):
    UNKNOWN = 0
    BLOCK_SIZE_1 = 1
    BLOCK_SIZE_32 = 32


class BlockShape(IntEnum):
    UNKNOWN = 0
    BLOCK_SHAPE_32 = 32


class CompatibilityFeature(IntEnum):
    NONE = 0
    MXFP = 1


# Op enum and the Attribute union share one order: union type i is the attribute of op i.
# Each entry: (op name, attribute table name, attribute fields).
_OPS = (
    ("ARGMAX", "ArgMax", (("axis", "int32"), ("nan_mode", "NanPropagationMode"))),
    ("AVG_POOL2D", "AvgPool2d", (("kernel", "[int32]"), ("stride", "[int32]"), ("pad", "[int32]"),
                                 ("acc_type", "DType"))),
    ("CONV2D", "Conv2d", (("pad", "[int32]"), ("stride", "[int32]"), ("dilation", "[int32]"),
                          ("local_bound", "bool"), ("acc_type", "DType"))),
    ("CONV3D", "Conv3d", (("pad", "[int32]"), ("stride", "[int32]"), ("dilation", "[int32]"),
                          ("local_bound", "bool"), ("acc_type", "DType"))),
    ("DEPTHWISE_CONV2D", "DepthwiseConv2d", (("pad", "[int32]"), ("stride", "[int32]"),
                                             ("dilation", "[int32]"), ("local_bound", "bool"),
                                             ("acc_type", "DType"))),
    ("FFT2D", "FFT2d", (("inverse", "bool"), ("local_bound", "bool"))),
    ("MATMUL", "MatMul", ()),
    ("MAX_POOL2D", "MaxPool2d", (("kernel", "[int32]"), ("stride", "[int32]"), ("pad", "[int32]"),
                                 ("nan_mode", "NanPropagationMode"))),
    ("RFFT2D", "RFFT2d", (("local_bound", "bool"),)),
    ("TRANSPOSE_CONV2D", "TransposeConv2d", (("out_pad", "[int32]"), ("stride", "[int32]"),
                                             ("local_bound", "bool"), ("acc_type", "DType"))),
    ("CLAMP", "Clamp", (("min_val", "[ubyte]"), ("max_val", "[ubyte]"),
                        ("nan_mode", "NanPropagationMode"))),
    ("ERF", "Erf", ()),
    ("SIGMOID", "Sigmoid", ()),
    ("TANH", "Tanh", ()),
    ("ADD", "Add", ()),
    ("ARITHMETIC_RIGHT_SHIFT", "ArithmeticRightShift", (("round", "bool"),)),
    ("BITWISE_AND", "BitwiseAnd", ()),
    ("BITWISE_OR", "BitwiseOr", ()),
    ("BITWISE_XOR", "BitwiseXor", ()),
    ("INTDIV", "IntDiv", ()),
    ("LOGICAL_AND", "LogicalAnd", ()),
    ("LOGICAL_LEFT_SHIFT", "LogicalLeftShift", ()),
    ("LOGICAL_RIGHT_SHIFT", "LogicalRightShift", ()),
    ("LOGICAL_OR", "LogicalOr", ()),
    ("LOGICAL_XOR", "LogicalXor", ()),
    ("MAXIMUM", "Maximum", (("nan_mode", "NanPropagationMode"),)),
    ("MINIMUM", "Minimum", (("nan_mode", "NanPropagationMode"),)),
    ("MUL", "Mul", ()),
    ("POW", "Pow", ()),
    ("SUB", "Sub", ()),
    ("TABLE", "Table", ()),
    ("ABS", "Abs", ()),
    ("BITWISE_NOT", "BitwiseNot", ()),
    ("CEIL", "Ceil", ()),
    ("CLZ", "Clz", ()),
    ("COS", "Cos", ()),
    ("EXP", "Exp", ()),
    ("FLOOR", "Floor", ()),
    ("LOG", "Log", ()),
    ("LOGICAL_NOT", "LogicalNot", ()),
    ("NEGATE", "Negate", ()),
    ("RECIPROCAL", "Reciprocal", ()),
    ("RSQRT", "Rsqrt", ()),
    ("SIN", "Sin", ()),
    ("SELECT", "Select", ()),
    ("EQUAL", "Equal", ()),
    ("GREATER", "Greater", ()),
    ("GREATER_EQUAL", "GreaterEqual", ()),
    ("REDUCE_ALL", "ReduceAll", (("axis", "int32"),)),
    ("REDUCE_ANY", "ReduceAny", (("axis", "int32"),)),
    ("REDUCE_MAX", "ReduceMax", (("axis", "int32"), ("nan_mode", "NanPropagationMode"))),
    ("REDUCE_MIN", "ReduceMin", (("axis", "int32"), ("nan_mode", "NanPropagationMode"))),
    ("REDUCE_PRODUCT", "ReduceProduct", (("axis", "int32"),)),
    ("REDUCE_SUM", "ReduceSum", (("axis", "int32"),)),
    ("CONCAT", "Concat", (("axis", "int32"),)),
    ("PAD", "Pad", ()),
    ("RESHAPE", "Reshape", ()),
    ("REVERSE", "Reverse", (("axis", "int32"),)),
    ("SLICE", "Slice", ()),
    ("TILE", "Tile", ()),
    ("TRANSPOSE", "Transpose", (("perms", "[int32]"),)),
    ("GATHER", "Gather", ()),
    ("SCATTER", "Scatter", ()),
    ("RESIZE", "Resize", (("mode", "ResizeMode"),)),
    ("CAST", "Cast", ()),
    ("RESCALE", "Rescale", (("scale32", "bool"), ("rounding_mode", "RoundingMode"),
                            ("per_channel", "bool"), ("input_unsigned", "bool"),
                            ("output_unsigned", "bool"))),
    ("CONST", "Const", ()),
    ("IDENTITY", "Identity", ()),
    ("CUSTOM", "Custom", (("operator_name", "string"), ("domain_name", "string"),
                          ("implementation_attrs", "[ubyte]"))),
    ("COND_IF", "CondIf", (("then_graph", "string"), ("else_graph", "string"))),
    ("WHILE_LOOP", "WhileLoop", (("cond_graph", "string"), ("body_graph", "string"))),
    ("VARIABLE", "Variable", ()),
    ("VARIABLE_WRITE", "VariableWrite", ()),
    ("VARIABLE_READ", "VariableRead", ()),
    ("CONST_SHAPE", "ConstShape", ()),
    # appended by tosa-tools 2026.2
    ("MATMUL_T_BLOCK_SCALED", "MatMulTBlockScaled", (("block_size", "BlockSize"),)),
    ("CAST_FROM_BLOCK_SCALED", "CastFromBlockScaled", (("block_size", "BlockSize"),)),
    ("CAST_TO_BLOCK_SCALED", "CastToBlockScaled", (("block_size", "BlockSize"),)),
    ("DIM", "Dim", (("axis", "int32"),)),
    ("CONCAT_SHAPE", "ConcatShape", ()),
    ("ADD_SHAPE", "AddShape", ()),
    ("SUB_SHAPE", "SubShape", ()),
    ("MUL_SHAPE", "MulShape", ()),
    ("SLICE_SHAPE", "SliceShape", ()),
    ("EXP2_SHAPE", "Exp2Shape", ()),
    ("LOG2_CEIL_SHAPE", "Log2CeilShape", ()),
    ("LOG2_FLOOR_SHAPE", "Log2FloorShape", ()),
    ("MAX_SHAPE", "MaxShape", ()),
    ("MIN_SHAPE", "MinShape", ()),
    ("MOD_SHAPE", "ModShape", ()),
    ("DIV_CEIL_SHAPE", "DivCeilShape", ()),
    ("DIV_FLOOR_SHAPE", "DivFloorShape", ()),
    ("ASSERT_EQUAL_SHAPE", "AssertEqualShape", (("allow_broadcast", "bool"),)),
    ("CONV2D_BLOCK_SCALED", "Conv2dBlockScaled", (("block_size", "BlockSize"),)),
    # appended by tosa-tools 2026.5
    ("MAX_POOL2D_ADAPTIVE", "MaxPool2dAdaptive", (("nan_mode", "NanPropagationMode"),)),
    ("AVG_POOL2D_ADAPTIVE", "AvgPool2dAdaptive", (("acc_type", "DType"),)),
    ("RESHAPE_BLOCK_SCALED", "ReshapeBlockScaled", (("block_size", "BlockSize"),)),
    ("ROW_GATHER_BLOCK_SCALED", "RowGatherBlockScaled", (("block_size", "BlockSize"),)),
    # appended by tosa-tools 2026.8
    ("ROW_GATHER", "RowGather", ()),
    ("MATMUL_T", "MatMulT", ()),
)

Op = IntEnum("Op", [("UNKNOWN", 0)] + [(name, i + 1) for i, (name, _, _) in enumerate(_OPS)])
Op.__doc__ = "TOSA operator enum; the value is also the Attribute union type of the op."

#: Op -> (attribute table name, fields).  The union type of an op's attribute equals its Op value.
ATTRIBUTES = {Op[name]: (table + "Attribute", fields) for name, table, fields in _OPS}

ENUMS = {e.__name__: e for e in (DType, ResizeMode, NanPropagationMode, RoundingMode, BlockSize,
                                 BlockShape, CompatibilityFeature)}

TABLES = {
    "Version": (("_major", "int32"), ("_minor", "int32"), ("_patch", "int32"), ("_draft", "bool")),
    "SoftwareVersion": (("_major", "int32"), ("_minor", "int32"), ("_micro", "int32"),
                        ("_modifier", "string")),
    "SerializationCompatibility": (("min_reader_version", "SoftwareVersion"),
                                   ("features", "uint64")),
    "TosaTensor": (("name", "string"), ("shape", "[int32]"), ("type", "DType"), ("data", "[ubyte]"),
                   ("variable", "bool"), ("is_unranked", "bool"), ("variable_name", "string"),
                   ("offset", "uint64"), ("size", "uint64"),
                   ("scale_type", "DType"), ("scale_data", "[ubyte]"), ("block_shape", "BlockShape"),
                   ("scale_offset", "uint64"), ("scale_size", "uint64")),
    "TosaShape": (("name", "string"), ("rank", "uint32"), ("data", "[ubyte]")),
    "OpLocation": (("text", "string"),),
    # "attribute" is a union: it takes two slots (type byte, then the table)
    "TosaOperator": (("op", "Op"), ("attribute", "union"), ("inputs", "[string]"),
                     ("outputs", "[string]"), ("location", "OpLocation")),
    "TosaBasicBlock": (("name", "string"), ("operators", "[TosaOperator]"),
                       ("tensors", "[TosaTensor]"), ("inputs", "[string]"), ("outputs", "[string]"),
                       ("shapes", "[TosaShape]")),
    "TosaRegion": (("name", "string"), ("blocks", "[TosaBasicBlock]")),
    "TosaGraph": (("version", "Version"), ("regions", "[TosaRegion]"),
                  ("software_version", "SoftwareVersion"),
                  ("compatibility", "SerializationCompatibility")),
}
ENUMS["Op"] = Op
ROOT_TABLE = "TosaGraph"

#: Non-zero defaults of scalar fields, by (table, field); every other scalar defaults to 0/False.
DEFAULTS = {
    ("Version", "_major"): -1, ("Version", "_minor"): -1, ("Version", "_patch"): -1,
    ("Version", "_draft"): True,
    ("SoftwareVersion", "_major"): -1, ("SoftwareVersion", "_minor"): -1,
    ("SoftwareVersion", "_micro"): -1,
}

#: vectors of bytes that flatbuffers aligns to 8 (force_align: 8)
FORCE_ALIGN_8 = {("TosaTensor", "data"), ("TosaTensor", "scale_data"), ("TosaShape", "data"),
                 ("ClampAttribute", "min_val"), ("ClampAttribute", "max_val")}
