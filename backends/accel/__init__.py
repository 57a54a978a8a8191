"""An FPGA-style int8 GEMM accelerator target (``--target accel``).

- ``config``: the core (MAC array, buffers, bus, clock) from the target string;
- ``semantics``: the integer semantics of an offloaded layer, and its numpy reference;
- ``partition``: which layers of a QDQ model the core runs, which nodes stay on the CPU, and why;
- ``compiler``: tiling, the instruction stream, packed weights;
- ``codegen``: the HLS project (C++ kernel, host driver, stream, README); ``simulate``: C simulation;
- ``hybrid``: the whole model, offloaded layers simulated, the rest in ONNX Runtime;
- ``cycles``: the cycle model; ``scalesim_check``: its compute cycles against SCALE-Sim;
- ``backend``: the registered backend tying them together.

Importing this package imports neither TVM nor a compiler.
"""
