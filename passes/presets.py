"""Named pipelines, by name. ``fold`` is the default pipeline of ``optimize``: every lossless pass, to a fixed point.

A preset is pipeline text; ``passes.pipeline`` parses it where the name is used.
"""

FOLD_PASSES = [
    "fold-constants",
    "fold-shapes",
    "eliminate-noop",
    "merge-consecutive",
    "fold-batchnorm",
    "fold-scale",
    "fuse-bias",
    "fold-pad",
    "eliminate-common",
    "eliminate-dead",
]

_PRESETS: dict[str, str] = {}


def register_preset(name: str, pipeline_text: str) -> None:
    _PRESETS[name] = pipeline_text


def preset_names() -> list[str]:
    return sorted(_PRESETS)


def preset_text(name: str) -> str:
    return _PRESETS[name]


register_preset("fold", f"fixpoint{{max=8}}({','.join(FOLD_PASSES)})")
