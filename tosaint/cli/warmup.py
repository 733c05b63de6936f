"""tosaint warmup: compile every JIT kernel ahead (for images and CI), into Numba's cache."""


def add_parser(sub):
    p = sub.add_parser("warmup", help="compile every Numba kernel ahead into the cache",
                       description="Compile every JIT kernel once, so that later runs (and "
                                   "other processes using the same cache) start warm.")
    p.add_argument("--impl", choices=("numba",), default="numba")
    p.set_defaults(func=main)


def main(args):
    import time
    try:
        from ..warmup import warmup
    except ImportError:
        from ..errors import TosaError
        raise TosaError("this tosaint has no ahead-of-time warmup (tosaint.warmup)") from None
    t0 = time.perf_counter()
    info = warmup(impl=args.impl) or {}
    dt = time.perf_counter() - t0
    detail = ", ".join(f"{k}: {v}" for k, v in info.items() if not isinstance(v, (dict, list)))
    print(f"warmed up in {dt:.1f} s" + (f" ({detail})" if detail else ""))
    return 0
