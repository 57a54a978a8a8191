"""Where the app writes: the terminal consoles, JSON on stdout, the default output folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

console = Console()
errors = Console(stderr=True)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def default_output_dir(model: str) -> Path:
    return Path.cwd() / f"{Path(model).stem}-optimized"
