"""tosaint diff MODEL.tosa --input NAME=FILE.npy ... (--against DIR|FILE | --oracle) [--json]"""
import json

EPILOG = """\
reference tensors (--against):
  DIR        one .npy per tensor, named <tensor name>.npy or its file-name-safe form (as
             written by `tosaint run --capture` and `tosaint diff --oracle --against DIR`)
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
    p = sub.add_parser("diff", help="find the first op where tosaint and a reference diverge",
                       description="Run MODEL with every intermediate captured and compare each "
                                   "tensor, in execution order, with a reference dump; report "
                                   "the first diverging op.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="a graph input (repeat); NAME may be omitted for a one-input graph")
    p.add_argument("--against", "-a", metavar="DIR|FILE", help="the reference tensors")
    p.add_argument("--oracle", action="store_true",
                   help="produce the reference tensors with the reference model CLI")
    p.add_argument("--impl", choices=("numba", "spec"), default="numba")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=main)


def main(args):
    from ..diff import diff
    from ..golden import model_bytes
    from .run import parse_inputs
    if not args.against and not args.oracle:
        raise ValueError("give --against DIR|FILE or --oracle")
    _, graph = model_bytes(args.model)
    inputs = {}
    for spec in args.input:
        name, sep, path = spec.partition("=")
        if not sep:
            inputs.update(parse_inputs([spec], graph))
        else:
            inputs[name] = path
    if args.oracle:
        report = diff(graph, inputs, oracle=True, impl=args.impl, save_oracle=args.against)
        report.model = args.model
    else:
        report = diff(graph, inputs, args.against, impl=args.impl)
        report.model = args.model
    if args.json:
        d = report.as_dict()
        print(json.dumps(d, indent=1, default=str))
    else:
        print(report.format())
    return report.exit_code
