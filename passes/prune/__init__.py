"""Pruning passes, one per module: ``prune`` (channels), ``prune-layers`` (residual blocks),
``sparsify`` (unstructured). Importing this package registers all of them."""

from passes.prune import prune_channels, prune_layers, prune_unstructured  # noqa: F401
