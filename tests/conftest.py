"""Shared fixtures: the official conformance suites, built once per checkout.

``suite``: TOSAINT_CTS_DIR when set, else the suite of TOSA_CTS_SEED (default 42, the official
seed: positive and ERROR_IF tests) built into ``<TOSAINT_CTS_ROOT or .cts>/seed<S>``.
``second_suite``: an independent positive suite from TOSA_CTS_SEED2 (default 7).
``extension_suite``: the EXT-INT4, EXT-INEXACTROUND and EXT-CONTROLFLOW suites.  All need
tosa-tools (the generator, and the reference model that records the expected outputs).

The suites the selected tests need are built after collection and before the first test
(``pytest_collection_finish``), by ``tests.cts.build_suite``: outside every per-test timeout,
with its own bound (TOSAINT_CTS_BUILD_TIMEOUT, default one hour), on every core, resuming an
interrupted build.  ``pytest -m "not slow"`` selects no conformance test and builds nothing.

Property tests draw the same examples on every run (hypothesis profile "ci", derandomized)
so that CI is reproducible; ``HYPOTHESIS_PROFILE=explore`` draws new random examples.
"""
import os
import time
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent

#: the experimental/other extensions' suites: (extension, operators it covers)
EXTENSIONS = {
    "tosa-ext-int4": ("conv2d", "conv3d", "depthwise_conv2d", "transpose_conv2d", "const",
                      "identity"),
    "tosa-ext-inexactround": ("rescale",),
    "tosa-ext-controlflow": ("cond_if", "while_loop"),
}


def _suites():
    """fixture key -> (folder, build_suite keyword arguments, or None when given by the user)"""
    root = Path(os.environ.get("TOSAINT_CTS_ROOT", ROOT / ".cts"))
    seed, seed2 = int(os.environ.get("TOSA_CTS_SEED", 42)), int(os.environ.get("TOSA_CTS_SEED2", 7))
    suites = {
        "suite": (os.environ.get("TOSAINT_CTS_DIR"), dict(seed=seed, negative=True)),
        "second_suite": (os.environ.get("TOSAINT_CTS_DIR2"), dict(seed=seed2, negative=False)),
    }
    suites = {k: (Path(given), None) if given else (root / f"seed{kw['seed']}", kw)
              for k, (given, kw) in suites.items()}
    for ext, ops in EXTENSIONS.items():
        suites[ext] = (root / ext, dict(seed=42, negative=True, ops=ops, extensions=(ext,)))
    return suites


#: suite key -> why it could not be built (the fixture fails every test that needs it)
_BUILD_ERRORS = {}


def _needed(items):
    keys = []
    for item in items:
        names = getattr(item, "fixturenames", ())
        found = [k for k in ("suite", "second_suite") if k in names]
        if "extension_suite" in names and hasattr(item, "callspec"):
            found.append(item.callspec.params["extension_suite"])
        keys += [k for k in found if k not in keys]
    return keys


def pytest_collection_finish(session):
    """Build the suites the selected tests need, once, before any test (and its timeout)
    starts."""
    if session.config.option.collectonly:
        return
    keys = _needed(session.items)
    if not keys:
        return
    try:
        import tosa_reference_model  # noqa: F401
    except ImportError:
        return                            # the fixtures skip
    from tests.cts import is_built, build_suite
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(line):
        if reporter is not None:
            reporter.write_line(f"conformance suites: {line}")
    for key in keys:
        out, kw = _suites()[key]
        if kw is None or is_built(out):
            continue
        say(f"building {out} (once per checkout; an interrupted build resumes)")
        t0 = time.perf_counter()
        try:
            build_suite(out, progress=say, **kw)
        except Exception as e:            # reported by every test that needs this suite
            _BUILD_ERRORS[key] = f"{type(e).__name__}: {e}"
            say(f"FAILED {out}: {e}")
            continue
        say(f"{out} built in {time.perf_counter() - t0:.0f} s")


def _suite(key):
    pytest.importorskip("tosa_reference_model")
    if key in _BUILD_ERRORS:
        pytest.fail(f"the conformance suite could not be built: {_BUILD_ERRORS[key]}",
                    pytrace=False)
    out, kw = _suites()[key]
    if kw is not None:
        from tests.cts import is_built
        if not is_built(out):
            pytest.fail(f"the conformance suite {out} is not built (it is built after "
                        "collection: run pytest on this test's file or node id)",
                        pytrace=False)
    return out


@pytest.fixture(scope="session", params=sorted(EXTENSIONS))
def extension_suite(request):
    return _suite(request.param)


@pytest.fixture(scope="session")
def suite():
    return _suite("suite")


@pytest.fixture(scope="session")
def second_suite():
    return _suite("second_suite")
