"""Ethos-U backend: compile TOSA graphs with Arm's Vela compiler (``pip install "tosaint[vela]"``).

    from tosaint import vela
    findings = vela.check(graph, "ethos-u55-128")     # what the target cannot run, by op
    result = vela.compile(graph, "ethos-u85-256")     # VelaResult: cmd_data, summary, ...

``tosaint.vela.u55`` holds GraphBuilder helpers that express int16 operations Ethos-U55/U65
cannot run (int16 MATMUL, int16 TABLE) exactly with operations they can run.

Importing this package does not import Vela; only :func:`compile` needs it.
"""
from .compiler import TARGETS, IOTensor, VelaResult, compile, run_vela, vela_flags
from .preflight import RULES, Finding, check, format_findings

__all__ = ["RULES", "TARGETS", "Finding", "IOTensor", "VelaResult", "check", "compile",
           "format_findings", "run_vela", "vela_flags"]
