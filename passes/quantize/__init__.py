"""Quantization passes, one per module; importing this package registers all of them.

Passes: ``quantize`` (static int8 QDQ, ``quantize_int8``), ``quantize-weights`` (int4/int2 block-wise
weight-only with GPTQ rounding, ``weight_only``). Helpers: ``observers`` (streaming histograms and
calibration ranges), ``qdq`` (Q/DQ building blocks), ``planner`` (layer choice, calibration, QDQ
build, bias correction), ``fidelity``, ``sensitivity`` (per-layer sensitivity, mixed precision,
metric-driven mode), ``gptq``.
"""

from passes.quantize import quantize_int8, weight_only  # noqa: F401
from passes.quantize import equalize  # noqa: F401
from passes.quantize import smoothquant  # noqa: F401
from passes.quantize import quantize_dynamic  # noqa: F401
from passes.quantize import accuracy  # noqa: F401
