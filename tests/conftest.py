"""Shared fixtures: the official conformance suites, built once per checkout.

``suite``: TOSAINT_CTS_DIR when set, else the suite of TOSA_CTS_SEED (default 42, the official
seed: positive and ERROR_IF tests) built into ``<TOSAINT_CTS_ROOT or .cts>/seed<S>``.
``second_suite``: an independent positive suite from TOSA_CTS_SEED2 (default 7).
``extension_suite``: the EXT-INT4, EXT-INEXACTROUND and EXT-CONTROLFLOW suites.  All need
tosa-tools (the generator, and the reference model that records the expected outputs).

The suites the selected tests need are built by ``tests.cts.build_suite`` in a background
thread started after collection, while the tests that need no suite run (those that do run
last, and wait for their suite before their protocol starts): outside every per-test timeout,
with the build's own bound (TOSAINT_CTS_BUILD_TIMEOUT, default one hour), on every core,
resuming an interrupted build.  ``pytest -m "not slow"`` selects no conformance test and builds
nothing.

Property tests draw the same examples on every run (hypothesis profile "ci", derandomized)
so that CI is reproducible; ``HYPOTHESIS_PROFILE=explore`` draws new random examples.
"""
import os
import threading
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
#: suite key -> set when its build has ended (built or failed)
_BUILT = {}
_LOG = []                                 # progress lines of the background build


def _keys(item):
    """The suite keys a test item needs."""
    names = getattr(item, "fixturenames", ())
    found = [k for k in ("suite", "second_suite") if k in names]
    if "extension_suite" in names and hasattr(item, "callspec"):
        found.append(item.callspec.params["extension_suite"])
    return found


def pytest_collection_modifyitems(config, items):
    """The tests that need a conformance suite run last, so the others run while it builds."""
    items[:] = [i for i in items if not _keys(i)] + [i for i in items if _keys(i)]


def _build_all(todo):
    from tests.cts import build_suite
    for key, out, kw in todo:
        t0 = time.perf_counter()
        try:
            build_suite(out, progress=_LOG.append, **kw)
            _LOG.append(f"{out} built in {time.perf_counter() - t0:.0f} s")
        except Exception as e:            # reported by every test that needs this suite
            _BUILD_ERRORS[key] = f"{type(e).__name__}: {e}"
            _LOG.append(f"FAILED {out}: {e}")
        finally:
            _BUILT[key].set()


def pytest_collection_finish(session):
    """Start building the suites the selected tests need, in a background thread (the
    generator and the reference model run in child processes on every core): before any test
    starts, outside every per-test timeout."""
    if session.config.option.collectonly:
        return
    keys = []
    for item in session.items:
        keys += [k for k in _keys(item) if k not in keys]
    try:
        import tosa_reference_model  # noqa: F401
    except ImportError:
        return                            # the fixtures skip
    from tests.cts import is_built
    todo = [(k, *_suites()[k]) for k in keys]
    todo = [(k, out, kw) for k, out, kw in todo if kw is not None and not is_built(out)]
    if not todo:
        return
    for k, out, _ in todo:
        _BUILT[k] = threading.Event()
    _say(session.config, "building " + ", ".join(str(out) for _, out, _ in todo) + " in the "
         "background (once per checkout; an interrupted build resumes); the tests that need "
         "them run last")
    threading.Thread(target=_build_all, args=(todo,), daemon=True,
                     name="conformance-suite-build").start()


def _say(config, line):
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"conformance suites: {line}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Wait for the suites this test needs before its protocol (and its timeout) starts."""
    for key in _keys(item):
        done = _BUILT.get(key)
        if done is not None and not done.is_set():
            t0 = time.perf_counter()
            _say(item.config, f"waiting for the build of {_suites()[key][0]} ...")
            while not done.wait(60):
                _say(item.config, f"... {_LOG[-1] if _LOG else 'building'}")
            _say(item.config, f"waited {time.perf_counter() - t0:.0f} s: "
                 f"{_LOG[-1] if _LOG else ''}")
    yield


def pytest_sessionfinish(session):
    """An interrupted session stops the build's child processes (finished groups stay)."""
    if any(not e.is_set() for e in _BUILT.values()):
        from tests.cts import stop_builds
        stop_builds()


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
