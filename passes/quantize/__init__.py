"""Quantization passes, one per module; importing this package registers all of them.

quantize (static int8 QDQ), quantize-weights (int4/int2 block-wise, GPTQ rounding), quantize-dynamic,
equalize (cross-layer equalization), smoothquant. Helpers: observers, qdq, planner, fidelity,
sensitivity, gptq.
"""

import importlib

PASS_MODULES = ("quantize_int8", "weight_only", "dynamic", "equalize", "smoothquant")

for _name in PASS_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _exc:  # a pass module not written yet must not hide the others
        if _exc.name != f"{__name__}.{_name}":
            raise
