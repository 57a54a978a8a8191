"""Quantization passes, one per module, each named after the pass it registers.

Passes: ``quantize`` (static int8 QDQ), ``quantize-dynamic``, ``quantize-weights`` (int4/int2
block-wise weight-only with GPTQ rounding), ``equalize``, ``smoothquant``. Helpers: ``observers``
(streaming histograms and calibration ranges), ``qdq`` (Q/DQ building blocks), ``planner`` (layer
choice, calibration, QDQ build, bias correction), ``fidelity``, ``sensitivity`` (per-layer
sensitivity, mixed precision, metric-driven mode), ``accuracy`` (``quantize_to_metric``), ``gptq``.
"""
