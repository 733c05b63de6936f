"""The ``tosaint`` command line.  Each subcommand lives in its own module of this package,
exporting ``add_parser(subparsers)`` and ``main(args) -> int``.

Exit codes: 0 success; 1 the job ran and found failures (conformance failures, differences);
2 bad input (unreadable or invalid model, wrong arguments, a TosaError).
"""
import argparse
import importlib
import sys

COMMANDS = ("inspect", "run", "conformance", "golden", "diff", "compile", "check")


def build_parser():
    p = argparse.ArgumentParser(
        prog="tosaint",
        description="Bit-exact TOSA interpreter for int16/int8 networks.",
        epilog="exit codes: 0 success, 1 failures found, 2 bad input or invalid model")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"tosaint.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"tosaint.cli.{name}":
                raise
            continue
        mod.add_parser(sub)
    return p


def main(argv=None):
    from ..errors import TosaError
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except TosaError as e:
        print(f"tosaint {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print(f"tosaint {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
