"""tosaint conformance DIR [--json FILE]: run every test folder below DIR (a malformed folder
is that test's failure; a DIR with no tests is bad input)."""
import json
import sys
import time

from ._options import add_limits, limits


def add_parser(sub):
    p = sub.add_parser("conformance", help="run TOSA conformance test folders",
                       description="Run every conformance test folder (desc.json) under DIR. "
                                   "Exit 0 only when all pass.")
    p.add_argument("dir")
    p.add_argument("--json", metavar="FILE", help="write per-test results as JSON")
    p.add_argument("--filter", help="only test folders whose path contains this")
    p.add_argument("--impl", choices=("auto", "numba", "spec"), default="auto")
    p.add_argument("--level", choices=("none", "8K"), default="none")
    p.add_argument("-q", "--quiet", action="store_true")
    add_limits(p)
    p.set_defaults(func=main)


def main(args):
    from ..conformance import run_suite
    t0 = time.perf_counter()
    show = sys.stderr.isatty() and not args.quiet

    def progress(i, n, r):
        if not r.passed:
            print(f"FAIL {r.path}: {r.message[:400]}", flush=True)
        elif show and i % 50 == 0:
            print(f"  {i}/{n}", end="\r", file=sys.stderr, flush=True)

    results = run_suite(args.dir, impl=args.impl, level=args.level, progress=progress,
                        filter=args.filter, **limits(args))
    passed = sum(r.passed for r in results)
    elapsed = time.perf_counter() - t0
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"passed": passed, "total": len(results), "seconds": elapsed,
                       "tests": [r.__dict__ for r in results]}, f, indent=1)
    bad = sum(r.error_type == "bad-test" for r in results)
    print(f"pass {passed}/{len(results)} ({elapsed:.1f} s)"
          + (f"; {bad} malformed test folder(s)" if bad else ""))
    return 0 if passed == len(results) else 1
