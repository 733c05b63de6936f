"""tosaint run MODEL.tosa --input NAME=FILE.npy ... --output-dir DIR [--capture]"""
from ._options import add_inputs, add_limits, input_paths, limits


def add_parser(sub):
    p = sub.add_parser("run", help="run a .tosa graph on .npy inputs",
                       description="Run a TOSA graph and write one .npy per output (int48 as "
                                   "int64) with the name -> file map in tensors.json.")
    p.add_argument("model")
    add_inputs(p)
    p.add_argument("--output-dir", "-o", required=True)
    p.add_argument("--capture", action="store_true", help="also write every intermediate")
    p.add_argument("--impl", choices=("auto", "numba", "spec"), default="auto")
    p.add_argument("--on-unpredictable", choices=("reference", "raise"), default="reference")
    add_limits(p)
    p.set_defaults(func=main)


def load_inputs(specs, graph):
    """The graph inputs named by ``--input`` specs, checked and cast (values that fit)."""
    from ..golden import coerce_inputs
    return coerce_inputs(graph, input_paths(specs, graph))


def main(args):
    from ..inputs import model_bytes
    from ..interpreter import prepare
    from ..testcase import write_tensors
    _, graph = model_bytes(args.model)
    plan = prepare(graph, impl=args.impl, **limits(args))
    result = plan.run(load_inputs(args.input, graph), capture=args.capture,
                      on_unpredictable=args.on_unpredictable)
    names = list(result) if args.capture else result.output_names
    write_tensors(args.output_dir, result, names=names)
    for d in result.diagnostics:
        print(f"diagnostic: {d}")
    print(f"wrote {len(names)} tensor(s) to {args.output_dir} (names -> files: "
          f"tensors.json)")
    return 0
