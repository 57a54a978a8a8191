"""Pruning passes, one per module: ``prune`` (channels), ``prune-layers`` (residual blocks),
``sparsify`` (unstructured)."""
