"""Anchor for the low-rank benchmark: AIMET's spatial SVD with greedy per-layer ratio selection.

Runs in its own virtual environment (torch, aimet-torch, onnx2torch; see docs/bench_lowrank_aimet.md),
not the project's: it imports nothing from graphpress. Its input is an ONNX file made with the
project's venv, e.g. the ResNet-50 builder with BatchNorm folded:

    PYTHONPATH=$PWD /work/main/.venv/bin/python -c "import onnx_ir as ir; from models.builders import build; \
        from passes.manager import PassManager; \
        ir.save(PassManager('fold', verify='off').run(build('resnet50')).model, '/tmp/resnet50_folded.onnx')"

Steps: onnx2torch converts the file; ``aimet_torch.compress.ModelCompressor.compress_model`` with
``CompressionScheme.spatial_svd``, ``CostMetric.mac`` and ``SpatialSvdParameters`` in auto mode
(``GreedySelectionParameters(target_comp_ratio=1 - cut, num_comp_ratio_candidates=N)``) compresses it,
scored by an eval callback that is top-1 agreement with the uncompressed model on ``--n-eval`` random
inputs (seed 1). The compressed model is then measured on ``--n-test`` held-out random inputs (seed 2):
output SQNR ``10 log10(sum y^2 / sum (y - yhat)^2)`` and top-1 agreement, plus AIMET's MAC and memory
statistics (conv and linear layers only, as AIMET counts them). The greedy eval-score table of the first
cut is reused for the next ones (AIMET's ``saved_eval_scores_dict``), so later cuts cost only the
selection and the final SVD; their recorded time says so.

Usage: /work/aimet-venv/bin/python tools/anchor_aimet.py [--onnx /tmp/resnet50_folded.onnx]
       [--cuts 0.3,0.5] [--candidates 5] [--n-eval 8] [--n-test 16] [--out docs/bench_lowrank_aimet.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx2torch import convert

from aimet_torch.common.defs import CompressionScheme, CostMetric, GreedySelectionParameters
from aimet_torch.common.cost_calculator import CostCalculator
from aimet_torch.compress import ModelCompressor
from aimet_torch.defs import SpatialSvdParameters
from aimet_torch.layer_database import LayerDatabase

ROOT = Path(__file__).resolve().parent.parent


def random_images(n: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, *shape[1:]), dtype=np.float32))


@torch.no_grad()
def logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    return model.eval()(images)


def sqnr_db(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    noise = float(((reference - approximation) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(float((reference**2).sum()) / noise)


def agreement(reference: torch.Tensor, approximation: torch.Tensor) -> float:
    return float((reference.argmax(1) == approximation.argmax(1)).float().mean())


SCORES = {"top1": agreement, "sqnr": sqnr_db}


def model_cost(model: torch.nn.Module, input_shape: tuple[int, ...]):
    """AIMET's own count: MACs and weights of the conv and linear layers."""
    db = LayerDatabase(model, torch.zeros(input_shape))
    cost = CostCalculator.compute_model_cost(db)
    return int(cost.mac), int(cost.memory)


def compress(model, cut, args, input_shape, eval_images, eval_reference, saved_scores):
    score = SCORES[args.score]

    def eval_callback(candidate, _iterations, use_cuda=False):
        return score(eval_reference, logits(candidate, eval_images))

    greedy = GreedySelectionParameters(
        target_comp_ratio=1 - cut,
        num_comp_ratio_candidates=args.candidates,
        saved_eval_scores_dict=saved_scores,
    )
    params = SpatialSvdParameters(SpatialSvdParameters.Mode.auto, SpatialSvdParameters.AutoModeParams(greedy))
    start = time.perf_counter()
    compressed, stats = ModelCompressor.compress_model(
        model,
        eval_callback=eval_callback,
        eval_iterations=1,
        input_shape=input_shape,
        compress_scheme=CompressionScheme.spatial_svd,
        cost_metric=CostMetric.mac,
        parameters=params,
    )
    return compressed, stats, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default="/tmp/resnet50_folded.onnx")
    parser.add_argument("--cuts", default="0.3,0.5", help="MAC fractions to remove, comma-separated")
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--n-eval", type=int, default=8)
    parser.add_argument("--n-test", type=int, default=16)
    parser.add_argument("--score", choices=sorted(SCORES), default="top1", help="eval callback: top-1 agreement or SQNR dB")
    parser.add_argument("--saved-scores", help="AIMET's greedy eval-score pickle from an earlier run with the same inputs")
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench_lowrank_aimet.json"))
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()

    torch.manual_seed(0)
    proto = onnx.load(args.onnx)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    input_shape = tuple(d.dim_value for d in dims)
    start = time.perf_counter()
    model = convert(proto).eval()
    convert_s = time.perf_counter() - start

    eval_images = random_images(args.n_eval, input_shape, seed=1)
    test_images = random_images(args.n_test, input_shape, seed=2)
    eval_reference = logits(model, eval_images)
    test_reference = logits(model, test_images)
    macs0, params0 = model_cost(model, input_shape)

    # AIMET writes its pickles under ./data: keep them out of the worktree.
    workdir = Path(tempfile.mkdtemp(prefix="aimet_anchor_"))
    os.chdir(workdir)
    rows = []
    saved_scores = str(Path(args.saved_scores).resolve()) if args.saved_scores else None
    for cut in (float(c) for c in args.cuts.split(",")):
        compressed, stats, seconds = compress(model, cut, args, input_shape, eval_images, eval_reference, saved_scores)
        macs, params = model_cost(compressed, input_shape)
        approx = logits(compressed, test_images)
        layer_ratios = {
            s.name: 1.0 if s.compression_ratio is None else float(s.compression_ratio) for s in stats.per_layer_stats
        }
        row = {
            "mac_cut_target": cut,
            "target_comp_ratio": 1 - cut,
            "macs_before": macs0,
            "macs_after": macs,
            "mac_ratio": macs / macs0,
            "aimet_mac_compression_ratio": float(stats.mac_compression_ratio),
            "aimet_memory_compression_ratio": float(stats.memory_compression_ratio),
            "params_before": params0,
            "params_after": params,
            "sqnr_db": sqnr_db(test_reference, approx),
            "top1_agreement": agreement(test_reference, approx),
            "eval_score_baseline": float(stats.baseline_model_accuracy),
            "eval_score_compressed": float(stats.compressed_model_accuracy),
            # AIMET leaves the ratio of a layer it does not compress as None.
            "layers_compressed": sum(1 for r in layer_ratios.values() if r < 1),
            "per_layer_comp_ratio": layer_ratios,
            "compress_seconds": seconds,
            "eval_scores_reused": saved_scores is not None,
            "eval_scores_file": saved_scores,
        }
        rows.append(row)
        print(
            f"cut {cut}: MACs {macs0} -> {macs} ({macs / macs0:.3f}), SQNR {row['sqnr_db']:.2f} dB, "
            f"top-1 {row['top1_agreement']:.3f}, {seconds:.0f} s",
            flush=True,
        )
        saved_scores = saved_scores or str(workdir / "data" / "greedy_selection_eval_scores_dict.pkl")
        result = {
            "tool": "aimet-torch spatial SVD, greedy selection",
            "onnx": args.onnx,
            "input_shape": list(input_shape),
            "eval_callback": args.score,
            "candidates": args.candidates,
            "n_eval": args.n_eval,
            "n_test": args.n_test,
            "onnx2torch_seconds": convert_s,
            "versions": {p: metadata.version(p) for p in ("aimet-torch", "torch", "onnx2torch", "onnx", "numpy")},
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "rows": rows,
        }
        out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
