"""tosaint run MODEL.tosa --input NAME=FILE.npy ... --output-dir DIR [--capture]"""
import os

import numpy as np


def add_parser(sub):
    p = sub.add_parser("run", help="run a .tosa graph on .npy inputs",
                       description="Run a TOSA graph and write one <name>.npy per output "
                                   "(int48 as int64).")
    p.add_argument("model")
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="a graph input (repeat); NAME may be omitted for a one-input graph")
    p.add_argument("--output-dir", "-o", required=True)
    p.add_argument("--capture", action="store_true", help="also write every intermediate")
    p.add_argument("--impl", choices=("numba", "spec"), default="numba")
    p.add_argument("--on-unpredictable", choices=("reference", "raise"), default="reference")
    p.set_defaults(func=main)


def safe_name(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def input_paths(specs, graph):
    """{input name: .npy path} from ``--input NAME=FILE.npy`` specs; a bare FILE.npy names
    the graph's only input."""
    paths = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            if len(graph.inputs) != 1:
                raise ValueError(f"--input {spec}: name the input (NAME=FILE.npy); the graph "
                                 f"takes {graph.inputs}")
            name, path = graph.inputs[0], spec
        paths[name] = path
    return paths


def parse_inputs(specs, graph):
    return {name: np.load(path) for name, path in input_paths(specs, graph).items()}


def main(args):
    from ..interpreter import run_tosa
    from ..schema.loader import load
    graph = load(args.model)
    result = run_tosa(graph, parse_inputs(args.input, graph), capture=args.capture,
                      impl=args.impl, on_unpredictable=args.on_unpredictable)
    os.makedirs(args.output_dir, exist_ok=True)
    names = list(result) if args.capture else result.output_names
    for name in names:
        np.save(os.path.join(args.output_dir, safe_name(name) + ".npy"), result[name])
    for d in result.diagnostics:
        print(f"diagnostic: {d}")
    print(f"wrote {len(names)} tensor(s) to {args.output_dir}")
    return 0
