"""Benchmark: the int8 accelerator target on real and built models, against ONNX Runtime and SCALE-Sim.

For each model: the folded float model is quantized by our ``quantize`` (entropy calibration on 8
feeds: rendered OCR images for PP-OCRv4 cls/rec, random images for the builders), partitioned, compiled
for two array sizes (16x16 and 32x32, both at 200 MHz), the HLS project generated and its C++ built
with g++; the whole model then runs on the verification feeds (other seeds) with the offloaded
layers in the C simulation and the rest in ONNX Runtime.

Columns: share of MACs offloaded; bit-exactness (simulator vs the numpy integer reference, every
layer output); agreement with ONNX Runtime's execution of each layer's QDQ nodes (within one
quantization step, exactly) and of the whole model (max abs difference, top-1 agreement); how many
outputs the float-scale round-half-even requantization (QLinearConv's) would change; cycles,
latency at 200 MHz and array utilization from the cycle model (an estimate); the cycle model's compute
cycles against SCALE-Sim's weight-stationary compute model on the same GEMM shapes and array size;
the simulator's wall time (the C++ kernel only, and the whole hybrid run with ONNX Runtime).

Writes ``docs/bench_accel.md`` (and ``.json``).
Usage: ``python tools/bench_accel.py [--models cls,resnet18,rec,mobilenetv2] [--feeds 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OCR = {"rec": "ppocr-rec", "cls": "ppocr-cls"}
CONFIGS = {
    "16x16": "accel",
    "32x32": "accel -block=32x32 -clock=200 -inp-buf=128 -wgt-buf=256 -acc-buf=256 -bus=32",
}
EXTRA = {"mobilenetv2": ("16x16 -depthwise", "accel -depthwise")}


def feeds_for(key: str, n: int, seed: int) -> list[dict]:
    from models import ocr_data

    if key in OCR:
        return ocr_data.calibration_arrays(key, n, seed=seed)
    rng = np.random.default_rng(seed)
    return [{"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(n)]


def qdq_model(key: str):
    import onnx_ir as ir

    from ir import io, shapes
    from models import builders, zoo
    from passes.calibration import Calibration
    from passes.manager import PassContext, PassManager

    if key in OCR:
        model = io.load(zoo.model_path(OCR[key]))
        shapes.fix_input_shapes(model, zoo.default_input_shapes(OCR[key]))
    else:
        model = builders.build(key, image_size=224)
    context = PassContext(calibration=Calibration.from_iterable(feeds_for(key, 8, seed=1)))
    result = PassManager("fold,quantize{samples=8}", verify="off", context=context).run(model)
    return ir.serde.serialize_model(result.model)


def bench_config(key: str, proto, label: str, target: str, feeds: list[dict], folder: Path, with_scalesim: bool) -> dict:
    from backends.accel.backend import verify
    from backends.accel.codegen import write_project
    from backends.accel.compiler import compile_layers
    from backends.accel.config import config_from_options
    from backends.accel.partition import partition
    from backends.accel.scalesim_check import scalesim_compute_cycles
    from backends.accel.simulate import Simulator, build_simulator
    from backends.target import parse_target

    config = config_from_options(parse_target(target).options)
    t0 = time.perf_counter()
    part = partition(proto, config)
    program = compile_layers(part.layers, config)
    compile_seconds = time.perf_counter() - t0
    project = folder / f"{key}-{label.replace(' ', '')}"
    write_project(program, project)
    sim = Simulator(project, build_simulator(project))
    notes: list[str] = []
    details, _ = verify(part, program, sim, feeds, notes)
    details.pop("_vectors")
    details["notes"] = notes
    errors = []
    if with_scalesim:
        for row in details["layers"]:
            if row["groups"] != 1:
                row["scalesim_compute_cycles"] = None
                continue
            reference = scalesim_compute_cycles(row["m"], row["k"], row["n"], config.block_in, config.block_out)
            row["scalesim_compute_cycles"] = reference
            row["scalesim_error"] = round(row["compute_cycles"] / reference - 1, 4)
            errors.append(row["scalesim_error"])
    cpu_ops: dict[str, int] = {}
    for op in details["ops"]:
        if op["side"] == "cpu":
            cpu_ops[op["op"]] = cpu_ops.get(op["op"], 0) + 1
    details["cpu_ops"] = cpu_ops
    details.pop("ops")
    details["compile_seconds"] = round(compile_seconds, 2)
    if errors:
        details["scalesim"] = {"max_abs_error": max(abs(e) for e in errors), "median_error": statistics.median(errors),
                               "within_15pct": sum(abs(e) <= 0.15 for e in errors) / len(errors), "layers": len(errors)}
    return details


def _byoc_cell(byoc: dict | None) -> str:
    if not byoc or not byoc.get("ran"):
        return "not run" if byoc is None else "failed"
    same = "yes" if byoc["agrees_with_onnx_partition"] else f"no (BYOC only {len(byoc['byoc_only'])}, ONNX only {len(byoc['onnx_only'])})"
    return f"{byoc['functions']}, {same}, {byoc['max_abs_error_vs_ort']:.3g}"


def markdown(results: dict, meta: dict) -> str:
    lines = [
        "# Benchmark: the int8 accelerator target (`--target accel`)",
        "",
        f"Machine: {meta['machine']}; load average {meta['load_start']} at the start, {meta['load_end']} at the end "
        f"(2 cores shared with other jobs: wall times are noisy). {meta['feeds']} verification feeds per model "
        "(rendered OCR images for cls/rec, random images for the builders; calibration used other feeds).",
        "Cycles, latency and utilization are **estimates** of the cycle model (`backends/accel/cycles.py`), not "
        "measurements on an FPGA; nothing here was synthesized (no Vitis HLS on this machine).",
        "",
        "## Summary",
        "",
        "| model | MACs | offloaded | bit-exact (outputs) | ORT layers within 1 step / exact | fixed vs float rounding differ | "
        "whole model vs ORT: max abs, top-1 | 16x16: cycles, ms @200 MHz, util | 32x32: cycles, ms, util | "
        "SCALE-Sim error 16x16 (max abs, median) | sim s (kernel / hybrid) | TVM BYOC: functions, same layers, max abs vs ORT |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, runs in results.items():
        a, b = runs["16x16"], runs.get("32x32")
        ss = a.get("scalesim")
        ss_text = f"{ss['max_abs_error']:.1%}, {ss['median_error']:+.1%}" if ss else "-"
        b_text = f"{b['cycles']:,}, {b['latency_ms']:.2f}, {b['utilization']:.0%}" if b else "-"
        lines.append(
            f"| {key} | {a['total_macs'] / 1e6:.1f} M | {a['offloaded_mac_share']:.1%} ({len(a['layers'])} layers) | "
            f"{'yes' if a['bit_exact'] else 'NO'} ({a['layer_outputs_compared']:,}) | "
            f"{a['ort_within_one_step']:.4%} / {a['ort_exact']:.2%} | {a['float_rounding_differs']:,} | "
            f"{a['whole_model']['max_abs_error']:.3g}, {a['whole_model']['top1_agreement']:.1%} | "
            f"{a['cycles']:,}, {a['latency_ms']:.2f}, {a['utilization']:.0%} | {b_text} | {ss_text} | "
            f"{a['simulator_seconds']:.2f} / {a['hybrid_seconds']:.2f} | {_byoc_cell(a.get('byoc'))} |"
        )
    for key, runs in results.items():
        for label, run in runs.items():
            if label in ("16x16", "32x32"):
                continue
            lines += ["", f"Variant `{key}` with `{run['config']}`: offloaded {run['offloaded_mac_share']:.1%} of MACs, "
                      f"bit-exact {'yes' if run['bit_exact'] else 'NO'}, ORT within one step {run['ort_within_one_step']:.4%}, "
                      f"{run['cycles']:,} cycles ({run['latency_ms']:.2f} ms), utilization {run['utilization']:.0%}."]
    lines += ["", "## What stays on the CPU", ""]
    for key, runs in results.items():
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(runs["16x16"]["cpu_ops"].items()))
        lines.append(f"- {key}: {ops}")
    for key, runs in results.items():
        for label in ("16x16", "32x32"):
            run = runs.get(label)
            if run is None:
                continue
            lines += ["", f"## {key}, {label} (`{run['config']}`)", "",
                      "| layer | M x K x N | tiling | load | compute | SCALE-Sim compute | error | store | cycles | bound | util |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for row in run["layers"]:
                ref = row.get("scalesim_compute_cycles")
                err = f"{row['scalesim_error']:+.1%}" if ref else "-"
                lines.append(
                    f"| {row['layer']} | {row['m']}x{row['k']}x{row['n']} | {row['tiling']} | {row['load_cycles']:,} | "
                    f"{row['compute_cycles']:,} | {ref if ref is None else format(ref, ',')} | {err} | {row['store_cycles']:,} | "
                    f"{row['cycles']:,} | {row['bound']} | {row['utilization']:.0%} |"
                )
    run_notes = sorted({f"{key}: {n}" for key, runs in results.items() for run in runs.values() for n in run.get("notes", ())
                        if "estimates" not in n and "in this process" not in n})
    lines += ["", "## Notes", ""] + [f"- {n}" for n in meta["notes"] + run_notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cls,resnet18,rec,mobilenetv2")
    parser.add_argument("--feeds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_accel.md")
    parser.add_argument("--resume", action="store_true", help="keep the models already in the .json next to --out")
    args = parser.parse_args()
    meta = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "load_start": tuple(round(v, 2) for v in os.getloadavg()), "feeds": args.feeds, "notes": [
                "SCALE-Sim 3.0.0: its compute model (`systolic_compute_ws`) is run on each GEMM; its full run with "
                "SRAM models fails under numpy 2 (TypeError in double_buffered_scratchpad_mem), and stalls are not "
                "compared. The cycle model's compute cycles differ from it by the M tiling (more folds when the "
                "accumulator buffer cannot hold all output rows).",
                "Depthwise convolutions stay on the CPU by default; `-depthwise` offloads them as one GEMM per channel "
                "(a 1-column GEMM: low utilization).",
                "The final Gemm/MatMul of the classifiers produce float outputs (quantize leaves them unquantized), "
                "so they stay on the CPU.",
                "The TVM route (BYOC) runs the same feeds: Relax imports the QDQ model, FuseOpsByPattern + RunCodegen "
                "(relax.ext.accel) take the integer layers, the host part is compiled by tvm.compile for llvm (untuned), "
                "the offloaded functions call the same C simulation.",
                "hls4ml anchor: not run. hls4ml 1.3.0 itself would install here (with h5py, quantizers, "
                "pyDigitalWaveTools), but each of its front ends needs a Keras, PyTorch or QONNX model (none of "
                "keras, torch, qonnx is installed) and it does not take a standard ONNX QDQ int8 model, so it "
                "cannot compile the models above as they are.",
            ]}
    results: dict = {}
    saved = args.out.with_suffix(".json")
    if args.resume and saved.exists():
        previous = json.loads(saved.read_text())
        results = previous["results"]
        meta["load_start"] = previous["meta"]["load_start"]
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.models.split(","):
            t0 = time.perf_counter()
            proto = qdq_model(key)
            feeds = feeds_for(key, args.feeds, seed=0)
            results[key] = {}
            for label, target in CONFIGS.items():
                results[key][label] = bench_config(key, proto, label, target, feeds, Path(tmp), with_scalesim=True)
            if key in EXTRA:
                label, target = EXTRA[key]
                results[key][label] = bench_config(key, proto, label, target, feeds, Path(tmp), with_scalesim=False)
            print(f"{key}: {time.perf_counter() - t0:.0f} s", flush=True)
            meta["load_end"] = tuple(round(v, 2) for v in os.getloadavg())
            args.out.write_text(markdown(results, meta))  # after every model: a failure later keeps these
            saved.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
