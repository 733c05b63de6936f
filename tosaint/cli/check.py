"""tosaint check MODEL.tosa --target T: validate the graph, then list what an Ethos-U target
cannot run (exit 1 if anything, 2 for an invalid graph)."""


def add_model_and_target(p):
    """The MODEL and --target arguments of ``check`` and ``compile``."""
    from ..vela.compiler import TARGETS
    p.add_argument("model")
    p.add_argument("--target", "-t", required=True, choices=sorted(TARGETS), metavar="TARGET",
                   help="ethos-u55-32/64/128/256, ethos-u65-256/512, "
                        "ethos-u85-128/256/512/1024/2048")


def add_parser(sub):
    p = sub.add_parser("check", help="list the ops an Ethos-U target cannot run",
                       description="Preflight for Vela: print every operator/type combination "
                                   "the target cannot run (exit code 1 when there is one). "
                                   "Does not need Vela.")
    add_model_and_target(p)
    p.set_defaults(func=main)


def main(args):
    """Validate the graph first (an invalid graph is bad input: exit 2), then list what the
    target cannot run."""
    from ..errors import UnsupportedOp
    from ..inputs import model_bytes
    from ..interpreter import validate
    from ..vela import check
    _, graph = model_bytes(args.model)
    try:
        validate(graph)
    except UnsupportedOp as e:          # tosaint cannot run it; Vela may still compile it
        print(f"note: not validated by tosaint: {e}")
    findings = check(graph, args.target)
    for f in findings:
        print(f)
    if findings:
        print(f"{args.model}: {len(findings)} finding(s) for {args.target}")
        return 1
    print(f"{args.model}: no findings for {args.target}")
    return 0
