"""Low-rank passes, one per module: ``decompose`` (SVD, spatial SVD, Tucker-2, CP) and ``separable``
(regular conv -> depthwise + pointwise). Importing this package registers both."""

from passes.decompose import decompose, separable  # noqa: F401
