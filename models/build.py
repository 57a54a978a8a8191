"""Command line: write one of the deterministic test subjects to an ONNX file.

    python -m models.build resnet50 -o resnet50.onnx [--batch N] [--image-size S] [--seed K]

``--batch`` takes a number or a dimension name (``--batch N`` gives a symbolic batch). Models over
2 GB cannot exist here (VGG-16 at 224 is about 0.55 GB), so the file is always self-contained.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

from ir.errors import GraphpressError, ModelSaveError
from models.builders import BUILDERS, build_proto


def _batch(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.build", description="Write a test-subject model.")
    parser.add_argument("name", choices=sorted(BUILDERS))
    parser.add_argument("-o", "--output", required=True, type=Path, help="where to write the .onnx file")
    parser.add_argument("--batch", type=_batch, default=1, help="batch size, or a name for a symbolic batch")
    parser.add_argument("--image-size", type=int, default=224, help="input height and width (multiple of 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    try:
        proto = build_proto(args.name, batch=args.batch, image_size=args.image_size, seed=args.seed)
        try:
            onnx.save_model(proto, args.output)
        except OSError as exc:
            raise ModelSaveError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    except GraphpressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    size_mb = args.output.stat().st_size / 2**20
    print(f"wrote {args.output} ({args.name}, {len(proto.graph.node)} nodes, {size_mb:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
