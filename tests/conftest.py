"""Shared fixtures: the official conformance suites, built once per checkout.

``suite``: TOSAINT_CTS_DIR when set, else the suite of TOSA_CTS_SEED (default 42, the official
seed: positive and ERROR_IF tests) built into ``.cts/seed<S>``.  ``second_suite``: an independent
positive suite from TOSA_CTS_SEED2 (default 7).  Both need tosa-tools (the generator and the
reference model that records the expected outputs).

Property tests draw the same examples on every run (hypothesis profile "ci", derandomized)
so that CI is reproducible; ``HYPOTHESIS_PROFILE=explore`` draws new random examples.
"""
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent


def _built_suite(seed, negative, name=None, **kw):
    pytest.importorskip("tosa_reference_model")
    from tests.cts import build_suite
    out = ROOT / ".cts" / (name or f"seed{seed}")
    if not (out / "SUITE_DONE").exists():
        shutil.rmtree(out, ignore_errors=True)
        build_suite(out, seed=seed, negative=negative, **kw)
    return out


#: the experimental/other extensions' suites: (extension, operators it covers)
EXTENSIONS = {
    "tosa-ext-int4": ("conv2d", "conv3d", "depthwise_conv2d", "transpose_conv2d", "const",
                      "identity"),
    "tosa-ext-inexactround": ("rescale",),
    "tosa-ext-controlflow": ("cond_if", "while_loop"),
}


@pytest.fixture(scope="session", params=sorted(EXTENSIONS))
def extension_suite(request):
    ext = request.param
    return _built_suite(42, True, name=ext, ops=EXTENSIONS[ext], extensions=(ext,))


@pytest.fixture(scope="session")
def suite():
    given = os.environ.get("TOSAINT_CTS_DIR")
    if given:
        return Path(given)
    return _built_suite(int(os.environ.get("TOSA_CTS_SEED", 42)), negative=True)


@pytest.fixture(scope="session")
def second_suite():
    given = os.environ.get("TOSAINT_CTS_DIR2")
    if given:
        return Path(given)
    return _built_suite(int(os.environ.get("TOSA_CTS_SEED2", 7)), negative=False)
