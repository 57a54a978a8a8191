"""Benchmark: our int8 quantization against ONNX Runtime's quantize_static and NNCF, plus int4 and clustering.

One run, the same calibration data (``ocr_data.calibration_arrays`` with seed 1, or random images
for the builders) and the same evaluation (``ocr_data.evaluate`` with seed 0; builders: fidelity
against the float model on random images of another seed). Every quantizer starts from the same
folded float model (``fold`` preset); the anchors get it converted to opset 17 (FACTS.md: ONNX
Runtime's quantizer writes invalid per-channel models at opset 12). Each quantization runs in a fresh
process (spawn) that reports its wall time and peak resident memory (``VmHWM``, including the
Python interpreter and imports). Latency: ONNX Runtime, every row with the same session options
(2 intra-op threads, no spinning, all graph optimizations), measured after all of a model's rows are
built, interleaved (one run of each row per round, ``--runs`` rounds), median.

Writes ``docs/bench_quantize.md`` (and ``.json``).
Usage: ``python tools/bench_quantize.py [--models rec,cls,det,mobilenetv2,resnet50] [--n-det 20]``;
a quick smoke test: ``--models cls --skip-lowbit --no-nncf --no-budget --runs 5 --out /tmp/b.md``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import machine_load  # noqa: E402  (tools/, the script's folder)

OCR = {"rec": "ppocr-rec", "cls": "ppocr-cls", "det": "ppocr-det"}
BUILDERS = ("mobilenetv2", "resnet50")
OURS = {
    "ours default (entropy)": "quantize",
    "ours minmax": "quantize{calibrate=minmax}",
    "ours mse": "quantize{calibrate=mse}",
    "ours percentile": "quantize{calibrate=percentile}",
    "ours mse + bias corr.": "quantize{calibrate=mse,bias_correction=true}",
}
# The float-preserving rewrites before quantization, where they apply: CLE on the convolutional models
# (ReLU6 rewritten exactly), SmoothQuant on the MatMul-heavy recognizer; dynamic quantization there too.
EXTRA = {
    "ours equalize + default": ("equalize{relu6=min},quantize", ("cls", "det", "mobilenetv2", "resnet50")),
    "ours smoothquant + default": ("smoothquant,quantize", ("rec",)),
    "ours dynamic (no calibration)": ("quantize-dynamic", ("rec",)),
}
# Mixed precision costs one build + evaluation per layer (sensitivity): run on the small OCR models.
BUDGET = {"ours, 15 dB budget": "quantize{fidelity_budget=15}"}
BUDGET_MODELS = ("rec", "cls")
ORT_METHODS = ("MinMax", "Percentile", "Entropy")


# -- data -------------------------------------------------------------------------------------------
def calibration_feeds(model_key: str, n: int) -> list[dict]:
    from models import ocr_data

    if model_key in OCR:
        return ocr_data.calibration_arrays(model_key, n, seed=1)
    rng = np.random.default_rng(1)
    return [{"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(n)]


def float_model(model_key: str, folder: Path) -> Path:
    from ir import io, shapes
    from models import builders, zoo
    from passes.manager import PassManager

    if model_key in OCR:
        model = io.load(zoo.model_path(OCR[model_key]))
        shapes.fix_input_shapes(model, zoo.default_input_shapes(OCR[model_key]))
    else:
        model = builders.build(model_key, image_size=224)
    folded = PassManager("fold", verify="off").run(model).model
    return io.save(folded, folder / f"{model_key}.float.onnx")


def opset17(path: Path) -> Path:
    import onnx

    proto = onnx.load(path)
    if proto.opset_import[0].version < 17:
        proto = onnx.version_converter.convert_version(proto, 17)
    out = path.with_suffix(".opset17.onnx")
    onnx.save(proto, out)
    return out


# -- quantizers (run in a child process) -------------------------------------------------------------
def _child(job: dict, queue) -> None:
    started = time.perf_counter()
    try:
        feeds = calibration_feeds(job["model"], job["samples"])
        if job["kind"] == "ours":
            from ir import io
            from passes.calibration import Calibration
            from passes.manager import PassContext, PassManager

            context = PassContext(calibration=Calibration.from_iterable(feeds))
            result = PassManager(job["pipeline"], verify="off", context=context).run(io.load(job["source"]))
            failures = [r.failure for r in result.records if r.failure]
            if failures:
                raise RuntimeError(failures[0])
            io.save(result.model, job["target"])
            notes = [n for r in result.records for n in r.notes]
            stats = {k: v for r in result.records for k, v in r.stats.items()}
        elif job["kind"] == "ort":
            from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

            class Reader(CalibrationDataReader):
                def __init__(self):
                    self.items = iter(feeds)

                def get_next(self):
                    return next(self.items, None)

            quantize_static(job["source"], job["target"], Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=getattr(CalibrationMethod, job["method"]))
            notes, stats = [], {}
        else:  # nncf
            import nncf
            import onnx

            quantized = nncf.quantize(onnx.load(job["source"]), nncf.Dataset(feeds), subset_size=len(feeds))
            onnx.save(quantized, job["target"])
            notes, stats = [], {}
        seconds = time.perf_counter() - started
        queue.put({"ok": True, "seconds": seconds, "peak_mb": _peak_rss_mb(), "notes": notes, "stats": stats})
    except Exception as exc:  # report the failure as a result row, do not stop the benchmark
        queue.put({"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]})


def _peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a spawned child would report its
    # parent's peak when that is larger.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def quantize_in_child(job: dict, timeout: float = 1800) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(job, queue))
    process.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:
        result = {"ok": False, "error": "timed out or crashed"}
    process.join(60)
    return result


# -- measurements -----------------------------------------------------------------------------------
def session(path: Path, threads: int = 2):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle sessions must not spin: with several sessions alive (interleaved timing) spinning
    # threads of one session steal the 2 cores from the one being timed.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def latencies_ms(paths: dict[str, Path], feed: dict, runs: int = 30) -> dict[str, float]:
    """Median latency of each model, interleaved: each round runs every model once, so load changes
    on the machine hit all rows alike."""
    sessions = {name: session(path) for name, path in paths.items()}
    for sess in sessions.values():
        for _ in range(3):
            sess.run(None, feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(runs):
        for name, sess in sessions.items():
            start = time.perf_counter()
            sess.run(None, feed)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values) * 1e3) for name, values in times.items()}


def zipped_bytes(path: Path) -> int:
    with tempfile.TemporaryDirectory() as folder:
        archive = Path(folder) / "m.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as handle:
            handle.write(path, "model.onnx")
        return archive.stat().st_size


def quality(model_key: str, path: Path, reference: Path, n_det: int) -> dict:
    from models import ocr_data

    if model_key in OCR:
        n = n_det if model_key == "det" else 100
        scores = ocr_data.evaluate(model_key, session(path, threads=0), n=n, seed=0)
        key = {"rec": "char_accuracy", "cls": "accuracy", "det": "f_score"}[model_key]
        return {"metric": key, "value": scores[key], "n": n}
    rng = np.random.default_rng(7)
    feeds = [{"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(16)]
    ref, got = session(reference, 0), session(path, 0)
    a = np.concatenate([ref.run(None, f)[0] for f in feeds])
    b = np.concatenate([got.run(None, f)[0] for f in feeds])
    sqnr = 10 * np.log10(np.sum(a.astype(np.float64) ** 2) / max(np.sum((a - b).astype(np.float64) ** 2), 1e-300))
    return {"metric": "top-1 agreement", "value": float(np.mean(a.argmax(1) == b.argmax(1))), "sqnr_db": float(sqnr), "n": 16}


# -- the run ----------------------------------------------------------------------------------------
def int8_stem(method: str) -> str:
    return method.replace(" ", "_").replace("+", "").replace(".", "").replace(",", "")


def retime(folder: Path, out: Path, runs: int) -> None:
    """Measure the latency of the int8 models of an earlier run again (kept with ``--keep``), e.g. on
    a quieter machine; accuracy, size and time to quantize stay as that run measured them."""
    retime_start = machine_load.snapshot()
    data = json.loads(out.with_suffix(".json").read_text())
    for model_key, rows in data["int8"].items():
        paths = {row["method"]: folder / (f"{model_key}.float.onnx" if row["method"] == "float" else f"{model_key}.{int8_stem(row['method'])}.onnx") for row in rows if "error" not in row}
        timed = latencies_ms({name: path for name, path in paths.items() if path.exists()}, calibration_feeds(model_key, 1)[0], runs)
        for row in rows:
            row["latency_ms"] = timed.get(row["method"])
        print(model_key, "latency ms", {k: round(v, 2) for k, v in timed.items()}, flush=True)
    data["meta"]["runs"] = runs
    data["meta"]["retime_load"] = [retime_start, machine_load.snapshot()]
    data["meta"]["retimed"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    meta = data.pop("meta")
    out.write_text(markdown(data, meta) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, **data}, indent=1, default=str))


def bench_int8(model_key: str, folder: Path, n_det: int, with_nncf: bool, with_budget: bool = True, runs: int = 30) -> list[dict]:
    source = float_model(model_key, folder)
    source17 = opset17(source)
    samples = 8 if model_key == "det" else 32 if model_key in OCR else 16
    feed = calibration_feeds(model_key, 1)[0]
    rows = [{"method": "float", **quality(model_key, source, source, n_det), "bytes": source.stat().st_size, "seconds": 0.0, "peak_mb": None}]
    paths = {"float": source}
    ours = {**OURS, **{name: pipe for name, (pipe, models) in EXTRA.items() if model_key in models}}
    ours.update(BUDGET if with_budget and model_key in BUDGET_MODELS else {})
    jobs = [(name, {"kind": "ours", "pipeline": pipe, "source": str(source)}) for name, pipe in ours.items()]
    jobs += [(f"ORT {m}", {"kind": "ort", "method": m, "source": str(source17)}) for m in ORT_METHODS]
    if with_nncf:
        jobs.append(("NNCF", {"kind": "nncf", "source": str(source17)}))
    for name, job in jobs:
        target = folder / f"{model_key}.{int8_stem(name)}.onnx"
        job.update(model=model_key, samples=samples, target=str(target))
        result = quantize_in_child(job)
        row = {"method": name}
        if result["ok"]:
            row.update(quality(model_key, target, source, n_det))
            row.update(bytes=target.stat().st_size, seconds=result["seconds"], peak_mb=result["peak_mb"])
            row["stats"] = result.get("stats", {})
            paths[name] = target
        else:
            row["error"] = result["error"]
        rows.append(row)
        print(model_key, row, flush=True)
    timed = latencies_ms(paths, feed, runs)
    for row in rows:
        if row["method"] in timed:
            row["latency_ms"] = timed[row["method"]]
    print(model_key, "latency ms", {k: round(v, 2) for k, v in timed.items()}, flush=True)
    return rows


def bench_low_bit(model_key: str, folder: Path, n_det: int) -> list[dict]:
    source = folder / f"{model_key}.float.onnx"
    pipelines = {
        "int4 nearest": "quantize-weights{rounding=nearest}",
        "int4 GPTQ": "quantize-weights{rounding=gptq}",
        "int4 GPTQ block 16": "quantize-weights{rounding=gptq,block_size=16}",
        "int2 GPTQ (ternary)": "quantize-weights{rounding=gptq,bits=2,block_size=16}",
        "cluster 16": "cluster{clusters=16}",
        "cluster 32": "cluster{clusters=32}",
        "cluster 64": "cluster{clusters=64}",
        "cluster 16 per channel": "cluster{clusters=16,per_channel=true}",
        "binary (experimental)": "quantize-weights{bits=1}",
        "ternary TWN (experimental)": "quantize-weights{bits=2,twn=true}",
        "prune 30% MACs + cluster 16 per channel": "prune{macs=0.3,importance=activation},cluster{clusters=16,per_channel=true}",
    }
    samples = 8 if model_key == "det" else 32
    rows = []
    for name, pipe in pipelines.items():
        target = folder / f"{model_key}.{name.replace(' ', '_').replace('(', '').replace(')', '')}.onnx"
        result = quantize_in_child({"kind": "ours", "pipeline": pipe, "source": str(source), "model": model_key, "samples": samples, "target": str(target)})
        row = {"method": name}
        if result["ok"]:
            row.update(quality(model_key, target, source, n_det))
            row.update(bytes=target.stat().st_size, zip_bytes=zipped_bytes(target), seconds=result["seconds"], stats=result["stats"])
        else:
            row["error"] = result["error"]
        rows.append(row)
        print(model_key, row, flush=True)
    float_row = {"method": "float", **quality(model_key, source, source, n_det), "bytes": source.stat().st_size, "zip_bytes": zipped_bytes(source)}
    return [float_row, *rows]


def markdown(results: dict, meta: dict) -> str:
    lines = ["## Quantization: our int8 against ONNX Runtime and NNCF; low-bit weights and clustering", "", f"Machine: {meta['machine']}; versions: {meta['versions']}.", "",
             "Accuracy: PP-OCR task metric on `ocr_data.evaluate` (seed 0; rec char accuracy, cls accuracy, det F-score), "
             "builders: top-1 agreement with the float model on 16 random images (SQNR in brackets). "
             "Calibration: seed 1 (32 samples; det 8; builders 16 random images). "
             f"Latency: ORT, 2 threads, no spinning, all graph optimizations, median of {meta.get('runs', 30)} interleaved rounds. "
             "Peak memory: the quantizing process's max RSS, interpreter and imports included.", ""]
    if meta.get("load"):
        lines[-1:] = [machine_load.describe(*meta["load"]), ""]
    if meta.get("retimed"):
        lines[-1:] = [*([machine_load.describe(*meta["retime_load"])] if meta.get("retime_load") else []), f"Latency re-measured with `--retime` on {meta['retimed']} from the kept models, on the same machine while "
                      "nothing else ran (the quantizing run shared the machine with other benchmarks); every other column is from the quantizing run.", ""]
    for model_key, rows in results.get("int8", {}).items():
        lines += [f"### int8: {model_key}", "", "| method | accuracy | latency ms | speed-up | size KB | quantize s | peak MB |", "|---|---|---|---|---|---|---|"]
        base = rows[0]["latency_ms"]
        for row in rows:
            if "error" in row:
                lines.append(f"| {row['method']} | failed: {row['error']} | | | | | |")
                continue
            value = f"{row['value']:.4f}" + (f" ({row['sqnr_db']:.1f} dB)" if "sqnr_db" in row else "")
            peak = f"{row['peak_mb']:.0f}" if row.get("peak_mb") else ""
            lines.append(f"| {row['method']} | {value} | {row['latency_ms']:.2f} | {base / row['latency_ms']:.2f}x | {row['bytes'] / 1024:.0f} | {row['seconds']:.1f} | {peak} |")
        lines.append("")
    for model_key, rows in results.get("low_bit", {}).items():
        lines += [f"### low-bit weights and clustering: {model_key}", "", "| method | accuracy | size KB | zip KB | Huffman KB (weights) | float weights KB | time s |", "|---|---|---|---|---|---|---|"]
        for row in rows:
            if "error" in row:
                lines.append(f"| {row['method']} | failed: {row['error']} | | | | | |")
                continue
            stats = row.get("stats", {})
            huffman = stats.get("Huffman-coded bytes (indices + codebooks)")
            weights = stats.get("float bytes")
            lines.append(f"| {row['method']} | {row['value']:.4f} | {row['bytes'] / 1024:.0f} | {row['zip_bytes'] / 1024:.0f} | "
                         f"{huffman / 1024:.0f} | {weights / 1024:.0f} | {row.get('seconds', 0):.1f} |" if huffman else
                         f"| {row['method']} | {row['value']:.4f} | {row['bytes'] / 1024:.0f} | {row['zip_bytes'] / 1024:.0f} | | {(weights or 0) / 1024:.0f} | {row.get('seconds', 0):.1f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="rec,cls,det,mobilenetv2,resnet50")
    parser.add_argument("--low-bit-models", default="rec,cls")
    parser.add_argument("--n-det", type=int, default=20)
    parser.add_argument("--no-nncf", action="store_true")
    parser.add_argument("--skip-lowbit", action="store_true", help="skip the int4/clustering tables")
    parser.add_argument("--no-budget", action="store_true", help="skip the fidelity-budget (mixed precision) rows")
    parser.add_argument("--runs", type=int, default=30, help="interleaved latency rounds per model")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_quantize.md"))
    parser.add_argument("--keep", type=Path, help="keep the quantized models in this folder (for --retime)")
    parser.add_argument("--retime", type=Path, metavar="FOLDER", help="only measure the latency of the models kept in FOLDER again, updating --out")
    args = parser.parse_args()
    if args.retime:
        retime(args.retime, Path(args.out), args.runs)
        return
    import onnx
    import onnxruntime

    versions = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "python": platform.python_version()}
    try:
        import nncf

        versions["nncf"] = nncf.__version__
    except ImportError:
        args.no_nncf = True
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
            "runs": args.runs, "load": [machine_load.snapshot()]}
    if args.skip_lowbit:
        args.low_bit_models = ""
    results: dict = {"int8": {}, "low_bit": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for model_key in filter(None, args.models.split(",")):
            results["int8"][model_key] = bench_int8(model_key, folder, args.n_det, not args.no_nncf, not args.no_budget, args.runs)
        for model_key in filter(None, args.low_bit_models.split(",")):
            if not (folder / f"{model_key}.float.onnx").exists():
                float_model(model_key, folder)
            results["low_bit"][model_key] = bench_low_bit(model_key, folder, args.n_det)
    out = Path(args.out)
    meta["load"].append(machine_load.snapshot())
    out.write_text(markdown(results, meta) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, **results}, indent=1, default=str))


if __name__ == "__main__":
    main()
