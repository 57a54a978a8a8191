"""Coverage-guided fuzzing of model loading and analysis with atheris (``pip install atheris``).

    python tools/fuzz_atheris.py CORPUS_DIR -max_total_time=120

Each input is the bytes of a model file. It goes through ``ir.io.load_bytes``, the structural
verifier and the cost analysis (``inspect`` without printing), in this process: every exception that
is not a ``GraphpressError`` is a finding. The corpus starts from the seeds of ``tools/fuzz.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris  # noqa: E402

with atheris.instrument_imports(include=["ir", "passes"]):
    from ir import cost, io
    from ir.errors import GraphpressError
    from passes.verify import structural_problems


def one_input(data: bytes) -> None:
    try:
        model = io.load_bytes(data)
        structural_problems(model)
        cost.analyze(model)
    except GraphpressError:
        pass


def main() -> None:
    corpus = Path(sys.argv[1])
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        import fuzz

        for name, proto in fuzz.seed_models():
            if name != "if-external":  # bytes carry no folder: its external weight is refused at once
                (corpus / name).write_bytes(proto.SerializeToString())
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
