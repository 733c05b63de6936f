"""The official TOSA conformance suite (PRO-INT + EXT-INT16 + EXT-DOUBLEROUND), bit-exact.

The suite is built by ``tests/cts.py`` with the tosa-tools generator and the reference model
(once, into ``.cts/seed<S>``), or taken from ``TOSAINT_CTS_DIR`` when that names an existing
suite.  ``TOSA_CTS_SEED`` picks another independent suite.
"""
import os
import shutil
from pathlib import Path

import pytest

from tosaint.conformance import find_tests, run_case

SEED = int(os.environ.get("TOSA_CTS_SEED", 42))
CHAPTERS = ("activation", "comparison", "data_layout", "data_nodes", "ew_binary", "ew_ternary",
            "ew_unary", "image", "reduction", "scatter_gather", "tensor", "type_conversion")


@pytest.fixture(scope="session")
def suite():
    given = os.environ.get("TOSAINT_CTS_DIR")
    if given:
        return Path(given)
    pytest.importorskip("tosa_reference_model")
    from tests.cts import build_suite
    out = Path(__file__).resolve().parent.parent / ".cts" / f"seed{SEED}"
    if not (out / "SUITE_DONE").exists():
        shutil.rmtree(out, ignore_errors=True)
        build_suite(out, seed=SEED)
    return out


def _check(tests, impl="numba"):
    assert tests, "no conformance tests found"
    failures = [r for r in (run_case(t, impl=impl) for t in tests) if not r.passed]
    msg = "\n".join(f"{Path(r.path).name}: {r.message[:300]}" for r in failures[:25])
    assert not failures, f"{len(failures)}/{len(tests)} conformance tests failed:\n{msg}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_positive(suite, chapter):
    _check(find_tests(suite / "conformance" / "operators" / chapter))


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_positive_spec_twins(suite, chapter):
    """The NumPy twins on every 8th test of each chapter (they are slow by design)."""
    _check(find_tests(suite / "conformance" / "operators" / chapter)[::8], impl="spec")


def test_error_if(suite):
    """Every ERROR_IF test is rejected with ErrorIfViolation (or SchemaError when the file
    itself is malformed), never with a crash or as merely unsupported."""
    _check(find_tests(suite / "conformance_negative"))
