"""The official TOSA conformance suite (PRO-INT + EXT-INT16 + EXT-DOUBLEROUND), bit-exact.

The suites are built by ``tests/cts.py`` with the tosa-tools generator and the reference model
(see the fixtures in conftest.py): the official seed-42 suite with its ERROR_IF tests, and a
second, independent positive suite from another seed.  Every test here is ``slow``: the suites
are built once per checkout (a few minutes on two cores) and run thousands of graphs.  The
spec twins on the suite and the extension suites are also ``extended``: the default run leaves
them out (``pytest -m extended`` runs them; CI runs both).
"""
import os
from pathlib import Path

import pytest

from tosaint.conformance import find_tests, run_case

pytestmark = pytest.mark.slow

CHAPTERS = ("activation", "comparison", "data_layout", "data_nodes", "ew_binary", "ew_ternary",
            "ew_unary", "image", "reduction", "scatter_gather", "tensor", "type_conversion")


def _check(tests, impl="numba"):
    assert tests, "no conformance tests found"
    failures = [r for r in (run_case(t, impl=impl) for t in tests) if not r.passed]
    msg = "\n".join(f"{Path(r.path).name}: {r.message[:300]}" for r in failures[:25])
    assert not failures, f"{len(failures)}/{len(tests)} conformance tests failed:\n{msg}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_positive(suite, chapter):
    _check(find_tests(suite / "conformance" / "operators" / chapter))


@pytest.mark.extended
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_positive_spec_twins(suite, chapter):
    """The NumPy twins on every 8th test of each chapter (they are slow by design)."""
    _check(find_tests(suite / "conformance" / "operators" / chapter)[::8], impl="spec")


def test_error_if(suite):
    """Every ERROR_IF test is rejected with ErrorIfViolation (or SchemaError when the file
    itself is malformed), never with a crash or as merely unsupported."""
    _check(find_tests(suite / "conformance_negative"))


def test_official_suite_complete(suite):
    """The official seed-42 suite holds all its tests: a truncated build cannot pass quietly."""
    if os.environ.get("TOSAINT_CTS_DIR") or os.environ.get("TOSA_CTS_SEED", "42") != "42":
        pytest.skip("not the official seed-42 suite")
    assert len(find_tests(suite / "conformance")) == 2721
    assert len(find_tests(suite / "conformance_negative")) == 300


def test_second_suite_complete(second_suite):
    """A second suite from another TOSA_CTS_SEED2: different shapes, data and attributes."""
    assert len(find_tests(second_suite / "conformance")) > 2000


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_second_suite(second_suite, chapter):
    _check(find_tests(second_suite / "conformance" / "operators" / chapter))


@pytest.mark.extended
def test_extension_suites(extension_suite):
    """EXT-INT4, EXT-INEXACTROUND and EXT-CONTROLFLOW: positive and ERROR_IF tests."""
    _check(find_tests(extension_suite / "conformance"))
    _check(find_tests(extension_suite / "conformance_negative"))
