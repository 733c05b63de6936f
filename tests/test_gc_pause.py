"""The collector pause around load and prepare: the collector is enabled again afterwards (and
stays disabled if the caller had disabled it), also when loading fails and across threads."""
import gc
import threading
from pathlib import Path

import pytest

import tosaint
from tosaint.gc_pause import gc_paused

EXAMPLE = Path(tosaint.__file__).parent / "examples" / "a16w8_conv.tosa"


def test_load_and_prepare_leave_the_collector_as_they_found_it():
    assert gc.isenabled()
    g = tosaint.load(EXAMPLE)
    assert gc.isenabled()
    tosaint.prepare(g)
    assert gc.isenabled()
    gc.disable()
    try:
        tosaint.prepare(tosaint.load(EXAMPLE), impl="spec")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_pause_ends_when_loading_fails():
    with pytest.raises(tosaint.SchemaError):
        tosaint.load(EXAMPLE.read_bytes()[:100])
    assert gc.isenabled()


def test_nested_and_concurrent_pauses():
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    inside, release = threading.Event(), threading.Event()

    def other():
        with gc_paused():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(10)
    with gc_paused():
        pass
    assert not gc.isenabled()          # the other thread's pause is still on
    release.set()
    t.join(10)
    assert gc.isenabled()
