"""The op set is complete: every operator of the schema is implemented or deliberately not,
with a reason; ``tosaint.supported_ops()`` is well-formed; type signatures outside the tables
are reported as the right error; the package's modules import one way (no cycle)."""
import ast
import pathlib

import numpy as np
import pytest

import tosaint
import tosaint.ops  # noqa: F401  (fills the registry)
from tosaint.errors import ErrorIfViolation, UnsupportedOp, UnsupportedTypeSignature
from tosaint.registry import NOT_IMPLEMENTED, REGISTRY
from tosaint.schema.definition import Op

PROFILES = {"PRO-INT", "EXT-INT16", "EXT-INT4", "EXT-DOUBLEROUND", "EXT-INEXACTROUND",
            "EXT-CONTROLFLOW", "EXT-VARIABLE"}
SHORT_TYPES = {"bool", "i4", "i8", "i16", "i32", "i48", "shape"}

#: the operators of the integer profile (and its extensions) that must never be excused
REQUIRED = {"CONV2D", "CONV3D", "DEPTHWISE_CONV2D", "TRANSPOSE_CONV2D", "MATMUL",
               "AVG_POOL2D", "MAX_POOL2D", "ARGMAX", "REDUCE_SUM", "REDUCE_MAX", "REDUCE_MIN",
               "REDUCE_ALL", "REDUCE_ANY", "RESCALE", "CAST", "TABLE", "MUL", "ADD", "SUB",
               "ARITHMETIC_RIGHT_SHIFT", "LOGICAL_LEFT_SHIFT", "LOGICAL_RIGHT_SHIFT",
               "BITWISE_AND", "BITWISE_OR", "BITWISE_XOR", "BITWISE_NOT", "LOGICAL_AND",
               "LOGICAL_OR", "LOGICAL_XOR", "LOGICAL_NOT", "INTDIV", "MAXIMUM", "MINIMUM",
               "EQUAL", "GREATER", "GREATER_EQUAL", "ABS", "CLZ", "NEGATE", "SELECT", "CLAMP"}


def _schema_ops():
    return [op for op in Op if op != Op.UNKNOWN]


def test_reasons_are_given_and_disjoint():
    for op, why in NOT_IMPLEMENTED.items():
        assert isinstance(why, str) and len(why) > 10, f"{op.name}: no useful reason {why!r}"
        assert op not in REGISTRY, f"{op.name} is registered AND listed as not implemented"
    for name in REQUIRED:
        assert Op[name] not in NOT_IMPLEMENTED, f"{name} must be implemented, not excused"


def test_every_schema_op_is_registered_or_excused():
    missing = [op.name for op in _schema_ops()
               if op not in REGISTRY and op not in NOT_IMPLEMENTED]
    assert not missing, (f"{len(missing)} operators of the schema are neither registered nor in "
                         f"NOT_IMPLEMENTED: {', '.join(missing)}")


def test_unimplemented_op_names_its_reason():
    from tosaint.builder import GraphBuilder
    b = GraphBuilder()
    x = b.input((4,), tosaint.DType.INT8, name="x")
    b.output(b.op(Op.SIGMOID, [x], (4,), tosaint.DType.INT8, name="y"))
    with pytest.raises(UnsupportedOp, match=r"SIGMOID y: .*floating-point only"):
        tosaint.prepare(b.build())


def test_supported_ops_rows_are_well_formed():
    rows = tosaint.supported_ops()
    assert rows, "supported_ops() is empty"
    seen = set()
    for row in rows:
        assert len(row) == 3, row
        op, sig, profile = row
        assert op in Op.__members__ and Op[op] in REGISTRY, row
        assert isinstance(sig, tuple) and all(t in SHORT_TYPES for t in sig), row
        assert profile in PROFILES, row
        assert (op, sig) not in seen, f"duplicate row {row}"
        seen.add((op, sig))
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), key=lambda n: Op[n])
    # spot checks of the type tables (tosa.xml 1.0)
    assert ("CONCAT", ("i16", "i16"), "EXT-INT16") in rows
    assert ("RESIZE", ("i16", "shape", "shape", "shape", "i48"), "EXT-INT16") in rows
    assert ("GATHER", ("i8", "i32", "i8"), "PRO-INT") in rows
    assert ("PAD", ("bool", "shape", "bool", "bool"), "PRO-INT") in rows
    assert not any(r[0] == "GATHER" and r[1][0] == "bool" for r in rows)


def _one_op_graph(in_dtype, out_dtype):
    from tosaint.builder import GraphBuilder
    b = GraphBuilder()
    x = b.input((4,), in_dtype, name="x")
    b.output(b.op(Op.ABS, [x], (4,), out_dtype, name="y"))
    return b.build()


def test_type_signature_errors():
    # an unsupported signature is not a passed negative test: not an ErrorIfViolation
    assert not issubclass(UnsupportedTypeSignature, ErrorIfViolation)
    # an integer combination outside the spec's table makes the graph invalid
    with pytest.raises(ErrorIfViolation, match=r"ABS y: type signature \(i8, i8\) is not "
                                               r"supported; ABS takes \(i32, i32\)"):
        tosaint.validate(_one_op_graph(tosaint.DType.INT8, tosaint.DType.INT8))
    # a floating-point signature is one tosaint does not implement
    with pytest.raises(UnsupportedTypeSignature, match=r"ABS y: type signature \(f32, f32\)"):
        tosaint.validate(_one_op_graph(tosaint.DType.FP32, tosaint.DType.FP32))
    tosaint.validate(_one_op_graph(tosaint.DType.INT32, tosaint.DType.INT32))
    out = tosaint.run_tosa(_one_op_graph(tosaint.DType.INT32, tosaint.DType.INT32),
                           np.array([-3, 0, 2, -7], np.int32))["y"]
    assert np.array_equal(out, [3, 0, 2, 7])


# ---- one-way layers -----------------------------------------------------------------------
def _package_modules():
    """{module name: file} for tosaint and its subpackages (kernels and schema included)."""
    mods = {}
    for pkg in ("tosaint", "tosaint.kernels", "tosaint.schema"):
        root = pathlib.Path(__import__(pkg, fromlist=["_"]).__file__).parent
        for f in root.rglob("*.py"):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[0] in ("kernels", "schema") and pkg == "tosaint":
                continue                         # listed under their own package
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([pkg] + parts)] = f
    return mods


def _imports(name, path, mods):
    """The tosaint modules ``name`` imports anywhere in its file (lazy imports count)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            targets = [a.name for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            base = package
            for _ in range(n.level - 1):
                base = base.rpartition(".")[0]
            mod = (base + ("." + n.module if n.module else "")) if n.level else n.module
            targets = [mod] + [f"{mod}.{a.name}" for a in n.names]
        else:
            continue
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            # a module taking names from a package that contains it is not a cycle
            if t and t != name and not name.startswith(t + "."):
                found.add(t)
    return found


def test_no_import_cycle():
    mods = _package_modules()
    graph = {m: _imports(m, f, mods) for m, f in mods.items()}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_ops_import_only_the_layers_below():
    mods = _package_modules()
    allowed = {"tosaint.registry", "tosaint.node", "tosaint.levels", "tosaint.dtypes",
               "tosaint.errors", "tosaint.kernels", "tosaint.schema",
               "tosaint.schema.definition", "tosaint.ops"}
    for name, path in mods.items():
        if name.startswith("tosaint.ops"):
            bad = {m for m in _imports(name, path, mods)
                   if m not in allowed and not m.startswith(("tosaint.ops.",
                                                             "tosaint.kernels."))}
            assert not bad, f"{name} imports {sorted(bad)}"
