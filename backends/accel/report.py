"""The accelerator's part of report.md: the same fields as report.json's ``accelerator`` entry, in words."""

from __future__ import annotations

from collections import Counter
from typing import Any


def accelerator_markdown(acc: dict[str, Any]) -> str:
    r = acc["resources"]
    cpu = Counter((o["op"], o["reason"]) for o in acc["ops"] if o["side"] == "cpu")
    offloaded = Counter(o["op"] for o in acc["ops"] if o["side"] == "accel")
    lines = [
        f"#### Accelerator `{acc['config']}`",
        "",
        f"- offloaded: {len(acc['layers'])} layers, {acc['offloaded_mac_share']:.1%} of the model's "
        f"{acc['total_macs']:,} MACs ({', '.join(f'{n} {op}' for op, n in sorted(offloaded.items()))} nodes)",
        f"- C simulation {'equals' if acc['bit_exact'] else 'DIFFERS FROM'} the integer reference bit for bit "
        f"on {acc['layer_outputs_compared']:,} layer outputs; ONNX Runtime's execution of the same layers agrees "
        f"within one quantization step on {acc['ort_within_one_step']:.4%} of them (exactly on {acc['ort_exact']:.4%}); "
        f"float-scale round-half-even requantization would change {acc['float_rounding_differs']:,} of them",
        f"- whole model (offloaded layers simulated, the rest in ONNX Runtime) against ONNX Runtime: max abs "
        f"difference {acc['whole_model']['max_abs_error']:.4g} (output '{acc['whole_model']['worst_output']}')",
        _byoc_line(acc.get("byoc")),
        f"- estimate: {acc['cycles']:,} cycles on the fabric, {acc['latency_ms']:.3f} ms at {acc['clock_mhz']} MHz, "
        f"array utilization {acc['utilization']:.1%} (cycle model, not a measurement)",
        f"- resources (estimate): {r['dsp_estimate']} MAC units (DSPs), {r['buffer_bits']:,} buffer bits "
        f"(~{r['bram18_estimate']} BRAM18)",
        "",
        "| layer | op | M x K x N | tiling | tiles | load | compute | store | cycles | bound | util | ref mismatches | ORT within 1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in acc["layers"]:
        share = row["ort_within_one_step"] / row["outputs"] if row.get("outputs") else 0.0
        lines.append(
            f"| {row['layer']} | {row['op']} | {row['m']}x{row['k']}x{row['n']} | {row['tiling']} | {row['tiles']} | "
            f"{row['load_cycles']:,} | {row['compute_cycles']:,} | {row['store_cycles']:,} | {row['cycles']:,} | "
            f"{row['bound']} | {row['utilization']:.0%} | {row.get('reference_mismatches', '-')} | {share:.2%} |"
        )
    lines += ["", "On the CPU:", ""]
    lines += [f"- {n} x {op}: {reason}" for (op, reason), n in sorted(cpu.items())]
    return "\n".join(lines) + "\n"


def _byoc_line(byoc: dict[str, Any] | None) -> str:
    if byoc is None:
        return "- TVM route: not run (TVM is not installed)"
    if not byoc.get("ran"):
        return "- TVM route: failed (see the notes)"
    agree = "the same layers as" if byoc["agrees_with_onnx_partition"] else "DIFFERENT layers from"
    return (f"- TVM route: Relax BYOC offloaded {byoc['functions']} functions, {agree} the ONNX-level partition; host part "
            f"compiled for llvm, offloaded functions in the C simulation: max abs difference "
            f"{byoc['max_abs_error_vs_ort']:.4g} from ONNX Runtime, top-1 agreement {byoc['top1_agreement']:.1%}")
