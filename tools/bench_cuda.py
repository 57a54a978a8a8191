"""Benchmark: TVM's CUDA build on a GPU against ONNX Runtime on that machine's CPU and eager PyTorch.

The GPU machine has no network and no room for TVM's 250 MB compiler library, so the work is split:

    python tools/bench_cuda.py prepare [--bundle .gpu]        # here: compile for sm_90, stage a runtime
    python tools/bench_cuda.py run --bundle .gpu --out DIR    # on the GPU machine (TVM runtime only)
    python tools/bench_cuda.py report DIR/bench_cuda.json     # here: writes docs/bench_cuda.md

``prepare`` folds each model with fixed input shapes, compiles it with ``compile_model(...,
"cuda-sm90")`` (TVM's default GPU pipeline) and stages the runtime-only TVM (Python files plus
``libtvm_runtime*.so``) and the cp312 ``apache-tvm-ffi`` wheel. The PP-OCR libraries are the shipped
artifact with the weights inside (``ppocr-cls``) runs as shipped. The other libraries would not fit the
64 MiB transfer limit with their weights, so they are compiled with the weights as parameters of
``main``; the device passes the initializers of the same folded model by name (the PP-OCR models
travel as ONNX files, the builders are rebuilt there: same builder, same seed, same fold).

``run`` loads every library with the shipped loading glue (``backends/cuda_loader.py``: nvcc compiles
the CUDA source at load), checks the outputs against ONNX Runtime on the CPU, and times: TVM on GPU 0
(``time_evaluator``, median), ONNX Runtime on the CPU (all cores, all graph optimizations) and, where
PyTorch sees a GPU, the same ONNX graph run op by op with PyTorch (``tools/torch_reference.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TVM_FFI_WHEEL = "apache-tvm-ffi==0.1.14.post0"
ONNX_IR_WHEEL = "onnx-ir==1.1.0"
ARCH = "sm_90"
# name -> (input shapes, where the weights live)
MODELS = {
    "ppocr-det": ({"x": [1, 3, 640, 640]}, "inputs"),
    "ppocr-rec": ({"x": [1, 3, 48, 320]}, "inputs"),
    "ppocr-cls": ({"x": [1, 3, 48, 192]}, "library"),
    "mobilenetv2": ({"input": [1, 3, 224, 224]}, "inputs"),
    "resnet50": ({"input": [1, 3, 224, 224]}, "inputs"),
}


# -- here -------------------------------------------------------------------------------------------
def folded_model(name: str):
    """The model every runtime gets: folded with the ``fold`` preset at fixed input shapes."""
    from passes.manager import PassContext, PassManager  # noqa: PLC0415

    shapes = MODELS[name][0]
    if name.startswith("ppocr-"):
        from ir import io  # noqa: PLC0415
        from ir.shapes import fix_input_shapes  # noqa: PLC0415
        from models.zoo import model_path  # noqa: PLC0415

        model = io.load(model_path(name))
        fix_input_shapes(model, shapes)
    else:
        from models.builders import build  # noqa: PLC0415

        model = build(name)
    return PassManager("fold", verify="off", context=PassContext(input_shapes=shapes)).run(model).model


def prepare(bundle: Path, names: list[str]) -> None:
    import onnx_ir as ir  # noqa: PLC0415

    from backends import compile_model  # noqa: PLC0415

    shutil.rmtree(bundle, ignore_errors=True)
    (bundle / "models").mkdir(parents=True)
    stage_runtime(bundle)
    manifest = {"arch": ARCH, "models": {}}
    for name in names:
        shapes, weights = MODELS[name]
        folder = bundle / "models" / name
        model = folded_model(name)
        started = time.perf_counter()
        if weights == "library":
            library, params = compile_model(model, "cuda-sm90", folder, name=name, check=False).library, []
        else:
            library, params = compile_params_as_inputs(model, shapes, folder / f"{name}.so")
        if name.startswith("ppocr-"):
            ir.save(model, folder / "model.onnx")
            # A rendered text image: on random noise the detector's output is nearly empty, and a
            # relative error against it says little.
            from models import ocr_data  # noqa: PLC0415

            np.save(folder / "input_0.npy", ocr_data.calibration_arrays(name.removeprefix("ppocr-"), 1, seed=0)[0]["x"])
        manifest["models"][name] = {
            "shapes": shapes, "weights": weights, "params": params,
            "library_bytes": library.stat().st_size, "compile_s": round(time.perf_counter() - started, 1),
        }  # fmt: skip
        print(f"prepared {name}: {library.stat().st_size / 1e6:.1f} MB library", flush=True)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))


def compile_params_as_inputs(model, shapes: dict, library: Path) -> tuple[Path, list[str]]:
    """A CUDA library whose ``main`` takes the weights after the inputs; returns it and their names."""
    import onnx_ir as ir  # noqa: PLC0415

    from backends.target import parse_target  # noqa: PLC0415
    from backends.tvm_build import import_tvm  # noqa: PLC0415

    tvm = import_tvm()
    # TVM's CUDA code generator keeps '/' of parameter names in kernel signatures (nvcc then fails):
    # the parameters get plain names here and are mapped back to the initializers' names.
    proto = ir.serde.serialize_model(model)
    original = {f"w{i}": tensor.name for i, tensor in enumerate(proto.graph.initializer)}
    plain = {name: key for key, name in original.items()}
    for tensor in proto.graph.initializer:
        tensor.name = plain[tensor.name]
    for node in proto.graph.node:
        node.input[:] = [plain.get(name, name) for name in node.input]
    module = tvm.relax.frontend.onnx.from_onnx(proto, shape_dict=shapes, keep_params_in_input=True)
    names = [original[var.name] for var in module["main"].params[len(shapes):]]
    target = tvm.target.Target(parse_target("cuda-sm90").to_tvm_dict(), host={"kind": "llvm"})
    library.parent.mkdir(parents=True, exist_ok=True)
    tvm.compile(module, target=target).export_library(str(library))
    return library, names


def stage_runtime(bundle: Path) -> None:
    """TVM's Python package without the compiler library, and the wheels the GPU machine lacks."""
    import tvm  # noqa: PLC0415

    source = Path(tvm.__file__).parent
    target = bundle / "site" / "tvm"
    skip = shutil.ignore_patterns("libtvm_compiler.so", "3rdparty", "src", "include", "__pycache__", "*.a")
    shutil.copytree(source, target, ignore=skip)
    wheels = bundle / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
         "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
         "--platform", "manylinux_2_17_x86_64", "-d", str(wheels), TVM_FFI_WHEEL, ONNX_IR_WHEEL],
        check=True,
    )  # fmt: skip


# -- on the GPU machine --------------------------------------------------------------------------------
def run(bundle: Path, out: Path, repeat: int) -> None:
    os.environ["TVM_USE_RUNTIME_LIB"] = "1"  # before tvm is imported: no compiler library here
    sys.path.insert(0, str(bundle / "site"))
    import onnxruntime as ort  # noqa: PLC0415

    from backends import cuda_loader  # noqa: PLC0415

    manifest = json.loads((bundle / "manifest.json").read_text())
    results = {"machine": machine_info(), "arch": manifest["arch"], "repeat": repeat, "models": {}}
    for name, entry in manifest["models"].items():
        folder = bundle / "models" / name
        row = results["models"].setdefault(name, {"shapes": entry["shapes"], "library_bytes": entry["library_bytes"], "weights": entry["weights"]})
        try:
            model_file = folder / "model.onnx"
            if not model_file.exists():  # a builder: rebuild it exactly as ``prepare`` did (not into the bundle)
                model_file = Path(tempfile.mkdtemp(prefix="graphpress-bench-")) / "model.onnx"
                import onnx_ir as ir  # noqa: PLC0415

                ir.save(folded_model(name), model_file)
            from ir.io import load as ir_load  # noqa: PLC0415
            from ir import runtime  # noqa: PLC0415

            inputs = sorted(folder.glob("input_*.npy"))
            feeds = [np.load(f) for f in inputs] or list(runtime.generate_inputs(ir_load(model_file), seed=0).values())
            session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
            feed_dict = {value.name: array for value, array in zip(session.get_inputs(), feeds)}
            reference = session.run(None, feed_dict)
            row["ort_cpu_ms"] = median_ms(lambda: session.run(None, feed_dict), repeat)

            started = time.perf_counter()
            machine, device = cuda_loader.load(folder / f"{name}.so", manifest["arch"])
            row["load_and_nvcc_s"] = round(time.perf_counter() - started, 1)
            import tvm  # noqa: PLC0415

            arguments = [tvm.runtime.tensor(a, device) for a in feeds]
            if entry["params"]:
                import onnx  # noqa: PLC0415
                from onnx import numpy_helper  # noqa: PLC0415

                weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(model_file)).graph.initializer}
                # np.array, not np.ascontiguousarray: that one turns 0-d weights into 1-d ones
                arguments += [tvm.runtime.tensor(np.array(weights[p], order="C"), device) for p in entry["params"]]
            result = machine["main"](*arguments)
            outputs = [result.numpy()] if hasattr(result, "numpy") else [item.numpy() for item in result]
            row["tvm_rel_error"] = max(relative_error(r, o) for r, o in zip(reference, outputs))
            machine.set_input("main", *arguments)
            timer = machine.time_evaluator("invoke_stateful", device, number=1, repeat=repeat, min_repeat_ms=0)
            row["tvm_gpu_ms"] = float(np.median(timer("main").results)) * 1e3
            row.update(torch_row(model_file, feed_dict, reference, repeat))
        except Exception as exc:  # one model failing must not lose the others' numbers
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        print(name, json.dumps(row), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_cuda.json").write_text(json.dumps(results, indent=1))


def torch_row(model_file: Path, feeds: dict, reference: list, repeat: int) -> dict:
    try:
        import torch  # noqa: PLC0415

        if not torch.cuda.is_available():
            return {"torch": "no CUDA device visible to PyTorch"}
        sys.path.insert(0, str(ROOT / "tools"))
        from torch_reference import TorchModel, time_ms  # noqa: PLC0415

        model = TorchModel(str(model_file), device="cuda")
        outputs = [t.float().cpu().numpy() for t in model(feeds)]
        return {
            "torch_version": torch.__version__,
            "torch_rel_error": max(relative_error(r, o) for r, o in zip(reference, outputs)),
            "torch_gpu_ms": time_ms(model, feeds, repeat),
        }
    except Exception as exc:  # PyTorch is an anchor: its absence or failure is reported, not fatal
        return {"torch": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]}


def median_ms(call, repeat: int) -> float:
    call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1e3


def relative_error(expected: np.ndarray, got: np.ndarray) -> float:
    expected, got = np.asarray(expected, np.float64), np.asarray(got, np.float64).reshape(np.shape(expected))
    return float(np.max(np.abs(expected - got)) / max(np.max(np.abs(expected)), 1e-12))


def machine_info() -> dict:
    info = {"python": platform.python_version(), "cpus": os.cpu_count()}
    for module in ("onnxruntime", "numpy", "torch"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    try:
        query = ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"]
        info["gpu"] = subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip()
        info["nvcc"] = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    except (OSError, subprocess.CalledProcessError):
        info["gpu"] = None
    return info


# -- report ---------------------------------------------------------------------------------------------
def report(results_file: Path, target: Path) -> None:
    results = json.loads(results_file.read_text())
    m = results["machine"]
    lines = [
        "## CUDA: TVM on an NVIDIA GPU against ONNX Runtime (CPU) and eager PyTorch (GPU)",
        "",
        f"Machine: {m.get('gpu')}, {m['cpus']} CPU cores; Python {m['python']}, onnxruntime {m['onnxruntime']}, "
        f"torch {m['torch']}, {m.get('nvcc')}. TVM 0.27.0.post1 runtime only (`TVM_USE_RUNTIME_LIB=1`), "
        f"libraries compiled on the 2-core development machine for `cuda-sm90` (TVM's default GPU pipeline, untuned) "
        f"and loaded with the shipped glue, which compiles their CUDA source with nvcc at load.",
        f"Written by `tools/bench_cuda.py` (prepare here, run on the GPU machine, report here), one run. "
        f"Latency: median of {results['repeat']} runs after a warm-up, batch 1; input: a rendered text image (PP-OCR), a random image (builders). "
        f"ONNX Runtime: CPU execution provider, all cores, all graph optimizations. PyTorch: the same ONNX graph "
        f"run op by op with eager PyTorch ops on the GPU (`tools/torch_reference.py`). Error: max |x - ORT| / max |ORT|.",
        "",
        "| model | input | TVM CUDA ms | ORT CPU ms | PyTorch GPU ms | ORT / TVM | PyTorch / TVM | TVM error | PyTorch error | library MB (weights) | load + nvcc s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["models"].items():
        shape = "x".join(str(d) for d in next(iter(row["shapes"].values())))
        if "error" in row:
            lines.append(f"| {name} | {shape} | failed: {row['error']} | | | | | | | | |")
            continue
        torch_ms = f"{row['torch_gpu_ms']:.2f}" if "torch_gpu_ms" in row else row.get("torch", "-")
        torch_ratio = f"{row['torch_gpu_ms'] / row['tvm_gpu_ms']:.2f}" if "torch_gpu_ms" in row else "-"
        weights = "inside" if row.get("weights") == "library" else "as inputs"
        torch_err = f"{row['torch_rel_error']:.1e}" if "torch_rel_error" in row else "-"
        lines.append(
            f"| {name} | {shape} | {row['tvm_gpu_ms']:.2f} | {row['ort_cpu_ms']:.2f} | {torch_ms} | "
            f"{row['ort_cpu_ms'] / row['tvm_gpu_ms']:.2f} | {torch_ratio} | {row['tvm_rel_error']:.1e} | {torch_err} | "
            f"{row['library_bytes'] / 1e6:.1f} ({weights}) | {row['load_and_nvcc_s']} |"
        )
    target.write_text("\n".join(lines) + "\n")
    print(target.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--bundle", type=Path, default=ROOT / ".gpu")
    p.add_argument("--models", default=",".join(MODELS))
    r = sub.add_parser("run")
    r.add_argument("--bundle", type=Path, default=ROOT / ".gpu")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--repeat", type=int, default=50)
    w = sub.add_parser("report")
    w.add_argument("results", type=Path)
    w.add_argument("--to", type=Path, default=ROOT / "docs" / "bench_cuda.md")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.bundle, args.models.split(","))
    elif args.command == "run":
        run(args.bundle, args.out, args.repeat)
    else:
        report(args.results, args.to)


if __name__ == "__main__":
    main()
