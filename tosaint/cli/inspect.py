"""tosaint inspect MODEL.tosa [--json]: what a .tosa file holds, without running it."""
import json
import os

from ..schema.definition import DType, Op


def add_parser(sub):
    p = sub.add_parser("inspect", help="summarize a .tosa file (version, inputs, outputs, ops)",
                       description="Print a .tosa file's TOSA version and serializer version, "
                                   "graph inputs and outputs (name, dtype, shape), operator "
                                   "counts, constant sizes and its regions/blocks.")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=main)


def _encoded_bytes(t):
    from ..schema.loader import encoded_size
    if t.data is not None:
        if t.dtype == DType.SHAPE:
            return 8 * int(t.data.size)
        return encoded_size(t.dtype, int(t.data.size))
    raw = t.extra.get("raw_data")
    return len(raw) if raw is not None else 0


def summarize(graph, path=None):
    """A JSON-able summary of ``graph`` (what ``tosaint inspect`` prints)."""
    def io(names):
        return [{"name": n, "dtype": DType(graph.tensors[n].dtype).name,
                 "shape": [int(d) for d in graph.tensors[n].shape]} for n in names]

    consts = [t for b in graph.blocks() for t in b.tensors.values()
              if t.data is not None or "raw_data" in t.extra]
    by_dtype = {}
    for t in consts:
        k = DType(t.dtype).name
        by_dtype[k] = by_dtype.get(k, 0) + _encoded_bytes(t)
    v = graph.version
    out = {
        "file": path,
        "file_bytes": os.path.getsize(path) if path else None,
        "tosa_version": {"major": v.major, "minor": v.minor, "patch": v.patch,
                         "draft": bool(v.draft), "text": str(v)},
        "software_version": None if graph.software_version is None else
        ".".join(str(x) for x in graph.software_version[:3]) +
        (f"-{graph.software_version[3]}" if graph.software_version[3] else ""),
        "compatibility": graph.compatibility,
        "inputs": io(graph.inputs),
        "outputs": io(graph.outputs),
        "op_counts": graph.op_counts(),
        "operators": sum(len(b.operators) for b in graph.blocks()),
        "tensors": sum(len(b.tensors) for b in graph.blocks()),
        "constants": {"tensors": len(consts), "bytes": sum(by_dtype.values()),
                      "bytes_by_dtype": dict(sorted(by_dtype.items()))},
        "regions": [{"name": r.name, "blocks": [{"name": b.name, "operators": len(b.operators),
                                                  "tensors": len(b.tensors)}
                                                 for b in r.blocks]} for r in graph.regions],
    }
    out["unknown_fields"] = list(getattr(graph, "dropped_fields", []))
    out["region_count"] = len(graph.regions)
    out["block_count"] = sum(len(r.blocks) for r in graph.regions)
    return out


def _fmt_io(items):
    return [f"  {i['name']}: {i['dtype'].lower()} {i['shape']}" for i in items]


def format_text(s):
    lines = [f"{s['file']}" + (f" ({s['file_bytes']} bytes)" if s["file_bytes"] else ""),
             f"TOSA version {s['tosa_version']['text']}"
             + (f", written by serializer {s['software_version']}" if s["software_version"]
                else "")]
    lines.append(f"inputs ({len(s['inputs'])}):")
    lines += _fmt_io(s["inputs"])
    lines.append(f"outputs ({len(s['outputs'])}):")
    lines += _fmt_io(s["outputs"])
    lines.append(f"operators ({s['operators']}):")
    width = max((len(k) for k in s["op_counts"]), default=0)
    lines += [f"  {k:<{width}}  {n}" for k, n in s["op_counts"].items()]
    c = s["constants"]
    detail = ", ".join(f"{k.lower()} {n}" for k, n in c["bytes_by_dtype"].items())
    lines.append(f"constants: {c['tensors']} tensors, {c['bytes']} bytes"
                 + (f" ({detail})" if detail else ""))
    lines.append(f"regions: {s['region_count']}, blocks: {s['block_count']}"
                 + ("" if s["region_count"] == 1 else
                    " (" + ", ".join(f"{r['name']}: {len(r['blocks'])}" for r in s["regions"])
                    + ")"))
    if s["unknown_fields"]:
        lines.append(f"fields unknown to tosaint (not kept on rewrite): "
                     f"{len(s['unknown_fields'])}, e.g. {s['unknown_fields'][0]}")
    return "\n".join(lines)


def main(args):
    from ..schema.loader import load
    graph = load(args.model)
    s = summarize(graph, args.model)
    if args.json:
        print(json.dumps(s, indent=1, default=lambda o: o.name if isinstance(o, (DType, Op))
                         else str(o)))
    else:
        print(format_text(s))
    return 0
