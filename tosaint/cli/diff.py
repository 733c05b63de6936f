"""tosaint diff MODEL.tosa --input NAME=FILE.npy ... (--against DIR|FILE | --oracle) [--json]"""
import json

EPILOG = """\
reference tensors (--against):
  DIR        one .npy per tensor, found through the folder's tensors.json (as written by
             `tosaint run --capture` and `tosaint diff --oracle --against DIR`), else
             named <escaped tensor name>.npy
  FILE.npz   an archive keyed by tensor name
  FILE       the text log of `tosa_reference_model --dump_intermediates 1` (its stderr or
             -o/--logfile); this CLI prints tensors as text and writes no .npy files for
             them, and prints int8/int4/bool tensors as raw characters (reported unreadable)
  --oracle   run the reference model CLI (tosa-tools) with every intermediate tensor made a
             graph output, and compare against its exact .npy outputs (with --against DIR,
             they are saved there)

exit codes:
  0  every compared tensor is equal
  1  a tensor differs (the first diverging op is named), or tosaint stopped as unpredictable
  2  bad input (unreadable model or reference, missing inputs, reference model errors)
"""


def add_parser(sub):
    import argparse

    from ._options import add_inputs, add_limits
    p = sub.add_parser("diff", help="find the first op where tosaint and a reference diverge",
                       description="Run MODEL with every intermediate captured and compare each "
                                   "tensor, in execution order, with a reference dump; report "
                                   "the first diverging op.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    add_inputs(p)
    p.add_argument("--against", "-a", metavar="DIR|FILE", help="the reference tensors")
    p.add_argument("--oracle", action="store_true",
                   help="produce the reference tensors with the reference model CLI")
    p.add_argument("--impl", choices=("auto", "numba", "spec"), default="auto")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_limits(p)
    p.set_defaults(func=main)


def main(args):
    from ..diff import diff
    from ..errors import InputError
    from ..inputs import model_bytes
    from ._options import input_paths, limits
    if not args.against and not args.oracle:
        raise InputError("give --against DIR|FILE or --oracle")
    _, graph = model_bytes(args.model)
    inputs = input_paths(args.input, graph)
    kw = limits(args)
    if args.oracle:
        report = diff(graph, inputs, oracle=True, impl=args.impl, save_oracle=args.against,
                      **kw)
    else:
        report = diff(graph, inputs, args.against, impl=args.impl, **kw)
    report.model = args.model
    if args.json:
        print(json.dumps(report.as_dict(), indent=1, default=str))
    else:
        print(report.format())
    return report.exit_code
