"""Options shared by the subcommands that run a graph: resource limits and input files."""
import argparse
import re

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size(text):
    """A byte count: ``1000000``, ``512M``, ``2G``, ``1.5GiB`` (powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 500M, 2G)")
    n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if n <= 0:
        raise argparse.ArgumentTypeError("the size must be > 0")
    return n


def positive(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if n <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return n


def add_limits(p):
    """``--max-memory`` and ``--max-while-iterations`` (defaults: tosaint's own limits)."""
    p.add_argument("--max-memory", type=size, metavar="SIZE",
                   help="refuse graphs whose tensors need more memory than SIZE (e.g. 500M, "
                        "2G), checked before anything is allocated (default: tosaint's "
                        "limit)")
    p.add_argument("--max-while-iterations", type=positive, metavar="N",
                   help="stop a WHILE_LOOP after N iterations with an error (default: "
                        "tosaint's limit)")


def limits(args):
    """The resource-limit keywords of ``prepare`` (None: tosaint's defaults)."""
    return {"max_memory": args.max_memory, "max_while_iterations": args.max_while_iterations}


def add_inputs(p):
    p.add_argument("--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
                   help="a graph input (repeat); NAME may be omitted for a one-input graph")


def input_paths(specs, graph):
    """{input name: .npy path} from ``--input NAME=FILE.npy`` specs; a bare FILE.npy names
    the graph's only input."""
    from ..errors import InputError
    paths = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            if len(graph.inputs) != 1:
                raise InputError(f"--input {spec}: name the input (NAME=FILE.npy); the graph "
                                 f"takes {graph.inputs}")
            name, path = graph.inputs[0], spec
        if name in paths:
            raise InputError(f"--input {name} is given twice")
        paths[name] = path
    return paths
