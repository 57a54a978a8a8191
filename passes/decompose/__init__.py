"""Low-rank passes: ``decompose`` (SVD, spatial SVD, Tucker-2, CP; ``decompose.py``) and
``separable`` (regular conv -> depthwise + pointwise; ``separable.py``), with their shared helpers:
``factorize`` (the factorizations), ``layers`` (which layers, their costs), ``candidates`` (options per
layer with measured errors), ``budget`` (the choice to a target), ``rewrite`` (the graph edit) and
``driver`` (the steps both passes share)."""
