"""tosaint compile MODEL.tosa --target T [--output-dir DIR] [--system-config S] [--memory-mode M]"""
import json
import os


def add_parser(sub):
    from .check import add_model_and_target
    p = sub.add_parser("compile", help="compile a .tosa graph for an Ethos-U NPU with Vela",
                       description="Run the preflight check, then Vela; write <model>_vela.npz "
                                   "and <model>_summary.json (and the per-layer table with "
                                   "--per-layer) and print the network summary.")
    add_model_and_target(p)
    p.add_argument("--output-dir", "-o", default=".")
    p.add_argument("--system-config", help="Vela system config (default per target)")
    p.add_argument("--memory-mode", help="Vela memory mode (default per target)")
    p.add_argument("--per-layer", action="store_true", help="also write the per-layer table")
    p.add_argument("--vela-flag", action="append", default=[], metavar="FLAG",
                   help="extra flag passed to Vela verbatim (repeat)")
    p.set_defaults(func=main)


def _fmt(v):
    return f"{v:.6g}" if isinstance(v, float) else str(v)


SHOWN = (("cycles_total", "cycles"), ("inference_time", "inference time (s)"),
         ("inferences_per_second", "inferences/s"), ("nn_macs", "MACs"),
         ("sram_memory_used", "SRAM used (KiB)"), ("dram_memory_used", "DRAM used (KiB)"),
         ("on_chip_flash_memory_used", "on-chip flash used (KiB)"),
         ("off_chip_flash_memory_used", "off-chip flash used (KiB)"))


def main(args):
    from ..inputs import model_bytes
    from ..vela import compile as vela_compile
    data, _ = model_bytes(args.model)     # the one model reader (refuses FIFOs, devices)
    res = vela_compile(data, args.target, system_config=args.system_config,
                       memory_mode=args.memory_mode, extra_flags=tuple(args.vela_flag),
                       per_layer=args.per_layer)
    os.makedirs(args.output_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.model))[0]
    npz = os.path.join(args.output_dir, f"{stem}_vela.npz")
    js = os.path.join(args.output_dir, f"{stem}_summary.json")
    res.save_npz(npz)
    info = res.summary_dict()
    if res.per_layer is not None:
        info["per_layer"] = res.per_layer
    with open(js, "w") as f:
        json.dump(info, f, indent=1)
    print(f"{args.model}: {res.target} ({res.system_config}, {res.memory_mode})")
    print(f"  command stream {len(res.cmd_data)} B, weights {len(res.weight_data)} B, "
          f"scratch {res.scratch_size} B")
    for key, label in SHOWN:
        if key in res.summary:
            print(f"  {label:26s} {_fmt(res.summary[key])}")
    if res.per_layer:
        print("  per layer:")
        for row in res.per_layer:
            print(f"    {row.get('Name', '?'):30s} {row.get('Original Operator', '?'):18s} "
                  f"cycles {row.get('Op Cycles', '?')}  MACs {row.get('MAC Count', '?')}")
    print(f"wrote {npz} and {js}")
    return 0
