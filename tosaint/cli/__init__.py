"""The ``tosaint`` command line.  Each subcommand lives in its own module of this package,
exporting ``add_parser(subparsers)`` and ``main(args) -> int``; ``COMMANDS`` lists them.

Exit codes: 0 success; 1 the job ran and found failures (conformance failures, differences);
2 bad input (unreadable or invalid model, wrong arguments, a TosaError, a resource limit).
Bad input is one line on stderr, never a traceback.
"""
import argparse
import os
import sys

from . import check, compile, conformance, diff, golden, inspect, run, warmup

COMMANDS = (inspect, run, conformance, golden, diff, compile, check, warmup)


def build_parser():
    p = argparse.ArgumentParser(
        prog="tosaint",
        description="Bit-exact TOSA interpreter for int16/int8 networks.",
        epilog="exit codes: 0 success, 1 failures found, 2 bad input or invalid model")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in COMMANDS:
        mod.add_parser(sub)
    return p


def _quiet_broken_pipe():
    """The reader of our stdout went away (``tosaint inspect ... | head``): not an error.
    Point stdout at /dev/null so that the interpreter's final flush stays silent."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


def main(argv=None):
    from ..errors import TosaError
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args) or 0
        sys.stdout.flush()        # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    except TosaError as e:
        print(f"tosaint {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"tosaint {args.command}: out of memory (a smaller --max-memory makes tosaint "
              "refuse such graphs before allocating)", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"tosaint {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
