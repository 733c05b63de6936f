"""tosaint golden MODEL.tosa [--input NAME=FILE.npy ...] [--random --seed S --count N] -o DIR
tosaint golden --batch SPEC -o DIR [--jobs N | --scheduler ADDRESS] [--json]"""
import json
import sys

from ._options import add_inputs, add_limits, limits

EPILOG = """\
output: one folder per input set in the TOSA conformance layout (desc.json, model.tosa, input
.npy files, Conformance-<output>.npy expected outputs; int48 as int64), runnable with
`tosa_reference_model --test_desc DIR/desc.json`.  Cases whose run is unpredictable (a REQUIRE
failed) are reported and not written.  Writes are atomic and finished cases are skipped, so an
interrupted run is completed by running it again.

SPEC (--batch): a directory of .tosa models (each gets --count random input sets from --seed)
or a JSON/YAML list of {"model": PATH, "inputs": {NAME: FILE.npy} or [..],
"random": {"seed": S, "count": N}}.

exit codes:
  0  every case was written or was already complete
  1  some cases failed or were unpredictable
  2  bad input (unreadable model or spec, missing or ill-typed inputs, bad options)
"""


def add_parser(sub):
    import argparse
    p = sub.add_parser("golden", help="write conformance-style golden test folders",
                       description="Generate golden test folders (desc.json + model + inputs + "
                                   "expected outputs) from tosaint's results.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="a .tosa model (not with --batch)")
    add_inputs(p)
    p.add_argument("--random", action="store_true",
                   help="draw the inputs not given from --seed over each dtype's full range")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--count", type=int, default=1, help="random input sets (default 1)")
    p.add_argument("--batch", metavar="SPEC", help="a directory of .tosa files or a "
                   "JSON/YAML spec")
    p.add_argument("--output-dir", "-o", required=True)
    p.add_argument("--jobs", "-j", type=int, default=None,
                   help="local worker processes for --batch (default: all cores)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run --batch on a Dask distributed scheduler (tcp://host:port)")
    p.add_argument("--verify", action="store_true",
                   help="run every case (finished ones too) on the reference model "
                        "(tosa-tools) and fail it unless bit-identical")
    p.add_argument("--impl", choices=("auto", "numba", "spec"), default="auto")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_limits(p)
    p.set_defaults(func=main)


def _input_paths(args):
    """{input name: .npy path} (golden() loads them itself), or None without --input; the
    graph inputs neither given nor drawn (--random) are bad input, said in CLI words."""
    from ..errors import InputError
    from ..inputs import model_bytes
    from ._options import input_paths
    _, graph = model_bytes(args.model)
    paths = input_paths(args.input, graph)
    missing = [n for n in graph.inputs if n not in paths]
    if missing and not args.random:
        raise InputError(f"graph input(s) {missing} not given: pass --input NAME=FILE.npy "
                         "for each, or --random to draw them")
    return paths or None


def _print(report, as_json, batch):
    from ..golden_batch import summary
    if as_json:
        print(json.dumps(summary(report), indent=1))
        return
    for r in report.results:
        if r.status in ("unpredictable", "failed"):
            print(f"{r.status.upper()} {r.name}: {r.message}")
        elif not batch:
            print(f"{r.status:7s} {r.path}")
    verified = [r for r in report.results if r.verified is not None]
    if verified:
        good = sum(r.verified for r in verified)
        again = sum(r.status == "skipped" for r in verified)
        print(f"verified on the reference model: {good} ok"
              + (f", {len(verified) - good} differ" if good < len(verified) else "")
              + (f" ({again} finished before, re-verified)" if again else ""))
    c = report.counts
    made = c["ok"]
    rate = f", {made / report.seconds:.1f} cases/s" if report.seconds > 0 and made else ""
    print(f"{len(report.results)} case(s): {c['ok']} written, {c['skipped']} already complete, "
          f"{c['unpredictable']} unpredictable, {c['failed']} failed "
          f"({report.seconds:.1f} s{rate}) -> {report.output_dir}")


def main(args):
    from ..golden import golden
    from ..golden_batch import golden_batch
    if args.batch:
        if args.model or args.input:
            print("tosaint golden: --batch takes no MODEL or --input", file=sys.stderr)
            return 2
        report = golden_batch(args.batch, output_dir=args.output_dir, jobs=args.jobs,
                              scheduler=args.scheduler, seed=args.seed, count=args.count,
                              impl=args.impl, verify=args.verify,
                              progress=False if args.no_progress else None, **limits(args))
    else:
        if not args.model:
            print("tosaint golden: give a MODEL.tosa or --batch SPEC", file=sys.stderr)
            return 2
        if args.jobs or args.scheduler:
            print("tosaint golden: --jobs/--scheduler need --batch", file=sys.stderr)
            return 2
        if args.seed < 0 or args.count < 0:
            print("tosaint golden: --seed and --count must be >= 0", file=sys.stderr)
            return 2
        report = golden(args.model, _input_paths(args), random=args.random,
                        seed=args.seed, count=args.count, output_dir=args.output_dir,
                        impl=args.impl, verify=args.verify, **limits(args))
    _print(report, args.json, bool(args.batch))
    return report.exit_code
