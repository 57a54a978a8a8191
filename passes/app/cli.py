"""The command line: ``python -m passes optimize|inspect|diff|list|targets``.

Exit codes: 0 success, 1 the model or a pass failed, 2 usage error. Errors print one line on stderr;
``--debug`` shows the traceback. Nothing is written unless the whole command succeeds, and outputs are
written atomically.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from ir.errors import GraphpressError, UsageError
from passes.app import commands
from passes.app.output import errors


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits 2 with a usage dump; keep the one-line contract
        raise UsageError(f"{self.prog}: {message}")


def join_target_flags(argv: list[str]) -> list[str]:
    """Let ``--target llvm -mcpu=cortex-a72`` pass unquoted: glue the ``-key=value`` tokens to the target."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        out.append(token)
        if token == "--target" and i + 1 < len(argv):
            parts = [argv[i + 1]]
            i += 2
            while i < len(argv) and argv[i].startswith("-") and not argv[i].startswith("--") and "=" in argv[i]:
                parts.append(argv[i])
                i += 1
            out.append(" ".join(parts))
            continue
        i += 1
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m passes", description="Verified graph optimization of ONNX models, compiled through TVM.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    optimize = commands.add_parser("optimize", help="run a pipeline of verified passes, write the model and a report, optionally compile it")
    optimize.add_argument("model")
    optimize.add_argument("--passes", default="fold", help="pipeline string (default: fold)")
    optimize.add_argument("--input-shape", action="append", default=[], metavar="NAME:D1,D2,...", help="fix an input's shape (repeatable)")
    optimize.add_argument("--calib", help=".npy/.npz file or a folder of .npy/.npz files or images")
    optimize.add_argument("--calib-preprocess", help="for image folders: size=HxW,mean=a/b/c,std=a/b/c,scale=s,layout=nchw|nhwc,color=rgb|bgr")
    optimize.add_argument("--calib-limit", type=int, default=None, help="use at most this many calibration samples")
    optimize.add_argument("--target", action="append", default=[], help="TVM target or preset (see 'targets'), e.g. llvm, arm-a72, 'llvm -mcpu=skylake-avx512' or llvm -mcpu=cortex-a72 unquoted; repeat for several libraries")
    optimize.add_argument("--tune-trials", type=_trials, metavar="N|Nx", help="tune with MetaSchedule: N measured candidates in all, or Nx: N for each task (0: only apply --tune-db)")
    optimize.add_argument("--tune-db", metavar="DIR", help="tuning database folder, created when missing and reused across runs and models")
    optimize.add_argument("--measure", type=int, default=0, metavar="N", help="measure each library's latency: median of N runs (here, or on --rpc)")
    optimize.add_argument("--rpc", metavar="[KEY@]HOST:PORT", help="a device reached through TVM's RPC: a server, or a tracker with the device KEY; used to measure and tune")
    optimize.add_argument("-o", "--output", help="output folder (default: ./<model name>-optimized)")
    optimize.add_argument("--verify", choices=["each", "end", "off"], default="each", help="numerical check after each pass (default), at the end, or never")
    optimize.add_argument("--tolerance", type=float, default=1e-4, help="largest relative output error a lossless pass may introduce")
    optimize.add_argument("--atol", type=float, default=1e-6, help="absolute output error always accepted (for outputs whose values are all tiny)")
    optimize.add_argument("--strict", action="store_true", help="fail instead of rolling back a pass that breaks the model")
    optimize.add_argument("--min-sqnr", type=float, metavar="DB", help="fail (exit 1, write nothing) when a lossy pipeline's output SQNR is below DB")
    optimize.add_argument("--dump-dir", help="write the model after every pass that changed it into this folder")

    inspect = commands.add_parser("inspect", help="op histogram, inputs/outputs, params, MACs, per-layer table")
    inspect.add_argument("model")
    inspect.add_argument("--input-shape", action="append", default=[], metavar="NAME:D1,D2,...")
    inspect.add_argument("--json", action="store_true")
    inspect.add_argument("--layers", type=int, default=30, help="rows of the per-layer table (0: all)")
    inspect.add_argument("--groups", action="store_true", help="show the channel dependency groups that pruning works on")
    inspect.add_argument("--html", metavar="FILE", help="write a self-contained HTML page: the graph, where the MACs and weights are")

    diff = commands.add_parser("diff", help="what changed between two models")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.add_argument("--input-shape", action="append", default=[], metavar="NAME:D1,D2,...")
    diff.add_argument("--json", action="store_true")
    diff.add_argument("--html", metavar="FILE", help="write a self-contained HTML page")
    diff.add_argument("--no-numeric", action="store_true", help="skip running both models")

    targets = commands.add_parser("targets", help="target presets, what builds each, and whether it builds and runs on this machine")
    targets.add_argument("--json", action="store_true")

    listing = commands.add_parser("list", help="passes, their options and docs; presets")
    listing.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = join_target_flags(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return getattr(commands, f"run_{args.command}")(args)
    except GraphpressError as exc:
        if debug:
            traceback.print_exc()
        errors.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        errors.print("interrupted; nothing was written")
        return 130
    except Exception as exc:  # a bug: say so in one line, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        first = (str(exc).splitlines() or [""])[0]
        errors.print(f"internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)", markup=False, soft_wrap=True)
        return 1



def _trials(text: str) -> int | str:
    """``--tune-trials``: an integer, or ``Nx`` (checked by ``backends.tuning.validate_tuning``)."""
    return int(text) if text.strip().lstrip("-").isdigit() else text
