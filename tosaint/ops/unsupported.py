"""The operators of the schema that tosaint deliberately does not implement, with the reason.

``tosaint.registry.NOT_IMPLEMENTED`` is what ``UnsupportedOp`` messages quote; the registry test
checks that every operator of the schema is either registered or listed here.
"""
from ..registry import not_implemented
from ..schema.definition import Op

not_implemented(
    "floating-point only (PRO-FP): TOSA defines no integer variant; integer networks use TABLE",
    Op.ERF, Op.SIGMOID, Op.TANH, Op.EXP, Op.LOG, Op.RECIPROCAL, Op.RSQRT, Op.POW, Op.SIN,
    Op.COS, Op.CEIL, Op.FLOOR, Op.REDUCE_PRODUCT)
not_implemented("floating-point only (PRO-FP with EXT-FFT)", Op.FFT2D, Op.RFFT2D)
not_implemented("CUSTOM operators are implementation-defined: their semantics are not in the "
                "specification", Op.CUSTOM)
not_implemented(
    "shape operators (EXT-DYNAMIC / EXT-SHAPE, TOSA 1.1 draft): tosaint runs static-shape "
    "PRO-INT graphs, where every shape value is a CONST_SHAPE",
    Op.DIM, Op.CONCAT_SHAPE, Op.ADD_SHAPE, Op.SUB_SHAPE, Op.MUL_SHAPE, Op.SLICE_SHAPE,
    Op.EXP2_SHAPE, Op.LOG2_CEIL_SHAPE, Op.LOG2_FLOOR_SHAPE, Op.MAX_SHAPE, Op.MIN_SHAPE,
    Op.MOD_SHAPE, Op.DIV_CEIL_SHAPE, Op.DIV_FLOOR_SHAPE, Op.ASSERT_EQUAL_SHAPE)
not_implemented(
    "block-scaled (MX) floating-point operators (EXT-MX*, TOSA 1.1 draft)",
    Op.MATMUL_T_BLOCK_SCALED, Op.CAST_FROM_BLOCK_SCALED, Op.CAST_TO_BLOCK_SCALED,
    Op.CONV2D_BLOCK_SCALED, Op.RESHAPE_BLOCK_SCALED, Op.ROW_GATHER_BLOCK_SCALED)
not_implemented("TOSA 1.1 draft operator (not in TOSA 1.0, which tosaint implements)",
                Op.MATMUL_T, Op.ROW_GATHER)
not_implemented("TOSA 1.1 draft adaptive pooling (not in TOSA 1.0, which tosaint implements)",
                Op.MAX_POOL2D_ADAPTIVE, Op.AVG_POOL2D_ADAPTIVE)
