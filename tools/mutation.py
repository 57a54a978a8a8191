"""Mutation testing with mutmut, one module at a time, on a scratch copy of the repository.

    python tools/mutation.py qdq [--minutes 10] [--functions 'x_activation_params*,...']

For a module named in ``MODULES`` this copies the tracked files to ``/tmp/graphpress-mutation/NAME``,
writes a ``[tool.mutmut]`` section there (the files to mutate, the test files that may kill the
mutants), runs ``mutmut run`` (optionally only the mutants of some functions: mutmut's name globs)
for at most ``--minutes``, then prints and saves (``docs/mutation/NAME.json``) the verdict of every
mutant that ran: killed, survived, timeout, no tests. The score is killed / (all that ran, less "no
tests"), the ones that never ran are counted separately so a time-boxed run says it was sampled.
Run it niced under the shared lock on a shared machine:
``flock /tmp/graphpress-heavy.lock nice -n 5 python tools/mutation.py qdq``.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = Path("/tmp/graphpress-mutation")
MUTMUT = [sys.executable, "-m", "mutmut"]

# name: (files to mutate, pytest arguments selecting the tests that may kill them, default function globs)
MODULES = {
    # the parameter functions (test_qdq_params), the graph side (test_qdq_graph) and the passes that write QDQ graphs
    "qdq": (["passes/quantize/qdq.py"], ["tests/quantize/test_qdq_params.py", "tests/quantize/test_qdq_graph.py", *(
        f"tests/quantize/test_{name}.py" for name in ("quantize", "quantize_dynamic", "quantize_weights", "equalize", "smoothquant")),
        "-m", "not real_models and not slow", "-k", "not builder_cnn and not mobilenetv2"],
            ["*x_activation_params*", "*x_symmetric_weight*", "*x_dequantize*", "*x_quantized_bias*"]),
    "observers": (["passes/quantize/observers.py"], ["tests/quantize/test_qdq_params.py", "tests/quantize/test_observers_reference.py", *(
        f"tests/quantize/test_quantize.py::{name}" for name in (
            "test_histogram_keeps_every_value_within_bounded_bins_across_growing_batches", "test_ranges_contain_zero_and_stay_within_the_data",
            "test_clipping_methods_cut_rare_outliers", "test_entropy_keeps_the_spike_of_a_saturated_relu6",
            "test_mse_range_clips_a_heavy_tail_where_that_lowers_the_error"))], []),
    "channel_groups.model": (["ir/channel_groups/model.py"], ["tests/prune/test_kept_indices.py", "tests/intent/test_prune_intent.py", "tests/prune/test_channel_offsets.py", "-m", "not real_models"], []),
    "channel_groups.offsets": (["ir/channel_groups/offsets.py"], ["tests/prune/test_channel_offsets.py"], []),
    "channel_groups.analysis": (["ir/channel_groups/analysis.py"], [
        "tests/prune/test_channel_rules.py", "tests/prune/test_channel_groups.py", "tests/prune/test_channel_offsets.py", "tests/prune/test_kept_indices.py",
        "tests/intent/test_prune_intent.py", "-m", "not real_models", "-k", "not real"], []),
    # the fold passes, grouped by the test files that exercise them (each pass has its own test file)
    "fold.eliminate": ([f"passes/fold/{name}.py" for name in ("eliminate_common", "eliminate_dead", "eliminate_noop")],
                       ["tests/passes/test_eliminate_common.py", "tests/passes/test_eliminate_dead.py", "tests/passes/test_eliminate_noop.py"], []),
    "fold.constants_shapes": (["passes/fold/fold_constants.py", "passes/fold/fold_shapes.py"],
                              ["tests/passes/test_fold_constants.py", "tests/passes/test_fold_shapes.py", "-k", "not real"], []),
    "fold.pad_scale_bias": ([f"passes/fold/{name}.py" for name in ("fold_pad", "fold_scale", "fuse_bias")],
                            ["tests/passes/test_fold_pad.py", "tests/passes/test_fold_scale.py", "tests/passes/test_fuse_bias.py"], []),
    "fold.merge_consecutive": (["passes/fold/merge_consecutive.py"], ["tests/passes/test_merge_consecutive.py"], []),
    "fold._rewrite": (["passes/fold/_rewrite.py"], ["tests/passes", "-k", "not real"], []),
    "fold_batchnorm": (["passes/fold/fold_batchnorm.py"], ["tests/passes/test_fold_batchnorm_reference.py", "tests/passes/test_fold_batchnorm.py", "-k", "not real"], []),
    "prune.apply": (["passes/prune/apply.py"], ["tests/prune/test_remove_channels_values.py", "tests/intent/test_prune_intent.py", "tests/prune/test_channel_offsets.py", "-m", "not real_models"], []),
    "reconstruct": (["passes/reconstruct.py"], ["tests/prune/test_reconstruct_math.py", "tests/prune/test_refit_driver.py", "tests/prune/test_reconstruct_layers.py", "tests/prune/test_refit_checked.py", "tests/prune/test_prune.py", "tests/intent/test_prune_intent.py", "-m", "not real_models"], []),
}
VERDICT = re.compile(r"^\s*(\S+__mutmut_\d+): (.+)$")


def prepare(name: str, files: list[str], tests: list[str]) -> Path:
    work = SCRATCH / name
    if work.exists():
        shutil.rmtree(work)
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for path in tracked:
        source = ROOT / path
        if source.is_file():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / path)
    config = (
        "\n[tool.mutmut]\n"
        'source_paths = ["ir", "passes", "models", "backends"]\n'
        f"only_mutate = {json.dumps(files)}\n"
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
    )
    with open(work / "pyproject.toml", "a") as handle:
        handle.write(config)
    return work


def verdicts(work: Path) -> dict[str, str]:
    out = subprocess.run([*MUTMUT, "results", "--all", "true"], cwd=work, capture_output=True, text=True).stdout
    return {m.group(1): m.group(2).strip() for line in out.splitlines() if (m := VERDICT.match(line))}


def per_file(ran: dict[str, str]) -> dict[str, dict[str, int]]:
    """Verdict counts per mutated module (the mutant's name up to its function: ``passes.fold.x.xǁ...``)."""
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, verdict in ran.items():
        module = ".".join(part for part in name.split(".") if not part.startswith("x"))
        out[module][verdict] += 1
    return {module: dict(counts) for module, counts in sorted(out.items())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", choices=sorted(MODULES))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--functions", help="comma-separated mutmut name globs (default: the module's own list, or all)")
    parser.add_argument("--reuse", action="store_true", help="keep the scratch copy and the verdicts of an earlier run")
    args = parser.parse_args()
    files, tests, default_globs = MODULES[args.module]
    globs = args.functions.split(",") if args.functions else default_globs
    work = SCRATCH / args.module if args.reuse and (SCRATCH / args.module).exists() else prepare(args.module, files, tests)
    started = time.time()
    try:
        subprocess.run([*MUTMUT, "run", "--max-children", "1", *globs], cwd=work, timeout=args.minutes * 60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
    found = verdicts(work)
    counts = collections.Counter(found.values())
    ran = {k: v for k, v in found.items() if v not in ("not checked",)}
    scored = [v for v in ran.values() if v != "no tests"]
    killed = sum(1 for v in scored if v in ("killed", "timeout"))
    summary = {
        "module": args.module, "files": files, "tests": tests, "functions": globs or ["all"],
        "command": f"nice -n 19 python tools/mutation.py {args.module}"
                   + (f" --functions '{args.functions}'" if args.functions else "") + f" --minutes {args.minutes:g}",
        "finished": finished, "minutes": round((time.time() - started) / 60, 1), "counts": dict(counts),
        "score": round(killed / len(scored), 3) if scored else None,
        "per_file": per_file(ran),
        "survived": sorted(k for k, v in ran.items() if v == "survived"),
        "no_tests": sorted(k for k, v in ran.items() if v == "no tests"),
    }
    out = ROOT / "docs" / "mutation" / f"{args.module}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: summary[k] for k in ("module", "finished", "minutes", "counts", "score", "per_file")}))
    for name in summary["survived"]:
        print("survived:", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
