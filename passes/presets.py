"""Named pipelines. ``fold`` is the default pipeline of ``optimize``: every lossless pass, to a fixed point."""

from passes.pipeline import register_preset

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

register_preset("fold", f"fixpoint{{max=8}}({','.join(FOLD_PASSES)})")
