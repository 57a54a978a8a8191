"""The ``accel`` backend: partition, compile, generate the HLS project, C-simulate, compare, count cycles.

Rules of a build (``--target accel ...``):
- The model must be a QDQ model (``quantize`` makes one); a model with no offloadable layer fails
  with a one-line ``BackendError`` that says to quantize first.
- The output folder ``out_dir/<name>_hls`` is the HLS project (``backends.accel.codegen``).
- Verification runs the model on deterministic random inputs (seed 0): offloaded layers in the C
  simulation, the rest in ONNX Runtime (``backends.accel.hybrid``). For every offloaded layer the
  simulator's int8 output must equal the numpy reference on the same input bit for bit
  (``bit_exact``); it is also compared with ONNX Runtime running the layer's own QDQ nodes (share
  within one quantization step, and exactly equal) and with the float-scale round-half-even form.
  The whole model's output is compared with ONNX Runtime on the QDQ model (``check``).
- The testbench (``accel_host . check``) is built with ``make``/the host compiler and run on the
  written vectors; the kernel also passes ``g++ -fsyntax-only -Wall -Werror``.
- Where TVM is installed, the model also goes the TVM route (``backends.accel.byoc``): Relax BYOC
  partitions it (``FuseOpsByPattern`` + ``RunCodegen`` calling ``relax.ext.accel``), the host part is
  compiled for ``llvm``, the offloaded functions call the C simulation; ``details["byoc"]`` says
  whether BYOC took the same layers as the ONNX-level partition and how the output compares with
  ONNX Runtime. The partition the HLS project is generated from is the ONNX-level one.
- ``details`` in the result hold the report fields: ``bit_exact``, ``cycles``, ``latency_ms``
  (an estimate at the configured clock), ``offloaded_mac_share``, ``layers`` (per-layer rows),
  ``ops`` (every node, its side and why), ``resources``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
import numpy as np
import onnx_ir as ir

from backends.accel.codegen import write_project
from backends.accel.compiler import compile_layers
from backends.accel.config import config_from_options
from backends.accel.cycles import layer_rows
from backends.accel.hybrid import HybridRunner, layer_model
from backends.accel.partition import partition
from backends.accel.semantics import from_carried, reference_layer, to_carried
from backends.accel.simulate import Simulator, build_simulator, build_testbench, syntax_check
from backends.base import Artifact, Backend, BuildRequest, BuildResult, register_backend
from backends.numeric_check import compare_outputs
from ir import runtime
from ir.errors import BackendError


class AccelBackend(Backend):
    key = "accel"
    description = "the int8 GEMM accelerator ('accel -block=16x16 -clock=200': HLS C++, C simulation, cycle estimate)"

    def build(self, request: BuildRequest) -> BuildResult:
        start = time.perf_counter()
        config = config_from_options(request.target.options, request.target.text)
        proto = ir.serde.serialize_model(request.model)
        part = partition(proto, config)
        if not part.layers:
            raise BackendError(
                "no layer can run on the accelerator: it takes int8 QDQ Conv/Gemm/MatMul layers; "
                "run the quantize pass first (--passes fold,quantize)"
            )
        program = compile_layers(part.layers, config)
        folder = request.out_dir / f"{request.name}_hls"
        write_project(program, folder)
        syntax_check(folder)
        library = build_simulator(folder)
        compile_seconds = time.perf_counter() - start
        notes = ["cycles and latency are estimates of the cycle model, not measurements",
                 "the TVM build (BYOC partition, host part for llvm) calls the simulator in this process: it is checked, not exported"]
        feeds = [runtime.generate_inputs(request.model, seed=0)]
        details, check = verify(part, program, Simulator(folder, library), feeds, notes, rtol=request.rtol, atol=request.atol)
        write_project(program, folder, details.pop("_vectors"))
        tb = build_testbench(folder)
        done = subprocess.run([str(tb), ".", "check"], cwd=folder, capture_output=True, text=True)
        details["testbench_passed"] = done.returncode == 0
        if done.returncode != 0:
            notes.append(f"the C testbench (accel_host . check) failed: {done.stdout.strip().splitlines()[-1:]}")
        artifacts = tuple(Artifact(role, path, path.stat().st_size) for role, path in (
            ("program", folder / "program.bin"), ("weights", folder / "weights.bin"), ("params", folder / "params.bin"),
            ("kernel", folder / "accel_core.cpp"), ("driver", folder / "host_driver.c"), ("readme", folder / "README.md")))
        return BuildResult(
            target=request.target.text, library=folder / "program.bin", size_bytes=(folder / "program.bin").stat().st_size,
            compile_seconds=compile_seconds, check=check, backend="accel-hls-csim", notes=tuple(notes),
            artifacts=artifacts, details=details,
        )


def verify(part, program, sim: Simulator, feeds, notes: list[str], *, rtol: float = 1e-4, atol: float = 1e-5):
    """(report details, whole-model check) on ``feeds``: bit-exactness, agreement with ONNX Runtime, cycles."""
    config = program.config
    sim_seconds = 0.0

    def run_layer(index: int, x: np.ndarray) -> np.ndarray:
        nonlocal sim_seconds
        t0 = time.perf_counter()
        y = sim.run_layer(index, x, part.layers[index].out_shape)
        sim_seconds += time.perf_counter() - t0
        return y

    runner = HybridRunner(part, run_layer)
    traces, outputs = [], []
    t0 = time.perf_counter()
    for feed in feeds:
        out, trace = runner.run(feed)
        traces.append(trace)
        outputs.append(out)
    hybrid_seconds = time.perf_counter() - t0
    rows = layer_rows(program)
    bit_exact = True
    total = within = exact_ort = float_diff = 0
    for index, layer in enumerate(part.layers):
        session = runtime.session(layer_model(part, index), optimize=True, threads=1)
        mismatches = ort_within = ort_exact = fdiff = count = 0
        for trace in traces:
            if index not in trace.inputs:
                continue
            x, y = trace.inputs[index], trace.outputs[index]
            ref = reference_layer(layer, x)
            mismatches += int(np.count_nonzero(ref != y))
            fdiff += int(np.count_nonzero(reference_layer(layer, x, "float") != ref))
            (ort_y,) = session.run(None, {layer.input_name: from_carried(x, layer.x_unsigned)})
            diff = np.abs(to_carried(ort_y, layer.y_unsigned).astype(np.int16) - y.astype(np.int16))
            ort_within += int(np.count_nonzero(diff <= 1))
            ort_exact += int(np.count_nonzero(diff == 0))
            count += y.size
        rows[index].update(outputs=count, reference_mismatches=mismatches, ort_within_one_step=ort_within,
                           ort_exact=ort_exact, float_rounding_differs=fdiff)
        bit_exact = bit_exact and mismatches == 0 and count > 0
        total += count
        within += ort_within
        exact_ort += ort_exact
        float_diff += fdiff
    reference = [runtime.run(runtime.session(part.model, optimize=True), feed) for feed in feeds]
    byoc = _byoc(part, run_layer, feeds, reference, config, notes)
    check = compare_outputs(reference[0], list(outputs[0].values()), rtol=max(rtol, 0.05), atol=max(atol, 0.05))
    cycles = sum(r["cycles"] for r in rows)
    vectors = {i: (traces[0].inputs[i], traces[0].outputs[i]) for i in traces[0].inputs}
    details = {
        "config": config.text,
        "bit_exact": bit_exact,
        "cycles": int(cycles),
        "latency_ms": round(cycles / (config.clock_mhz * 1e3), 4),
        "clock_mhz": config.clock_mhz,
        "offloaded_mac_share": round(part.offloaded_mac_share, 4),
        "offloaded_macs": part.offloaded_macs,
        "total_macs": part.total_macs,
        "utilization": round(part.offloaded_macs / (cycles * config.block_in * config.block_out), 4) if cycles else 0.0,
        "ort_within_one_step": round(within / total, 6) if total else 0.0,
        "ort_exact": round(exact_ort / total, 6) if total else 0.0,
        "float_rounding_differs": float_diff,
        "layer_outputs_compared": total,
        "whole_model": {"max_abs_error": check.max_abs_error, "max_rel_error": check.max_rel_error,
                        "worst_output": check.worst_output, "feeds": len(feeds),
                        "top1_agreement": _top1_agreement(reference, outputs)},
        "byoc": byoc,
        "simulator_seconds": round(sim_seconds, 3),
        "hybrid_seconds": round(hybrid_seconds, 3),
        "resources": config.resources(),
        "layers": rows,
        "ops": [dataclasses.asdict(op) for op in part.ops],
        "_vectors": vectors,
    }
    if not bit_exact:
        notes.append("the C simulation differs from the integer reference: see the per-layer rows")
    return details, check


def _byoc(part, run_layer, feeds, reference, config, notes) -> dict | None:
    """The TVM route: BYOC partitioning, the host part compiled for llvm, offloaded layers simulated."""
    import importlib.util

    if importlib.util.find_spec("tvm") is None:
        notes.append("TVM is not installed: the BYOC partition and the TVM host build were not run")
        return None
    from backends.accel.byoc import run_with_tvm

    try:
        run = run_with_tvm(part.model, part, run_layer, feeds, config)
    except Exception as exc:  # TVM's import or compile failing on a model is reported, not fatal
        notes.append(f"the TVM BYOC route failed: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else type(exc).__name__}")
        return {"ran": False}
    result = {"ran": bool(run.outputs), "functions": run.functions, "agrees_with_onnx_partition": not run.byoc_only and not run.onnx_only,
              "byoc_only": run.byoc_only, "onnx_only": run.onnx_only}
    if run.outputs:
        first = [{next(iter(ref)): out} for ref, out in zip(reference, run.outputs)]
        result["max_abs_error_vs_ort"] = float(max(np.abs(np.asarray(next(iter(ref.values())), np.float64) - out).max()
                                                  for ref, out in zip(reference, run.outputs)))
        result["top1_agreement"] = _top1_agreement(reference, first)
    return result


def _top1_agreement(reference: list[dict], outputs: list[dict]) -> float:
    """Share of argmax positions (over the last axis of the first output) where both agree."""
    agree = total = 0
    for ref, out in zip(reference, outputs):
        name = next(iter(ref))
        a, b = np.asarray(ref[name]), np.asarray(out[name])
        if a.ndim == 0 or a.shape != b.shape:
            continue
        same = a.argmax(axis=-1) == b.argmax(axis=-1)
        agree += int(np.count_nonzero(same))
        total += same.size
    return round(agree / total, 6) if total else 0.0


register_backend(AccelBackend())
