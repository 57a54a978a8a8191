"""Writing the HLS project for the offloaded layers: the core's C++, its configuration, the host driver,
the instruction stream, packed weights and test vectors.

The folder (``write_project``):
- ``accel_config.h``: the configuration (BLOCK_IN, BLOCK_OUT, buffer depths) as macros;
- ``accel_core.h``, ``accel_core.cpp``: the kernel (synthesizable subset: fixed-bound loops with
  ``#pragma HLS PIPELINE`` / ``ARRAY_PARTITION``, int8_t/int32_t arithmetic, no dynamic memory);
- ``host_driver.c``: loads the stream and runs layers; its ``main`` is the C-simulation testbench;
- ``program.bin``, ``weights.bin``, ``params.bin``: the instruction stream (a layer table first),
  the packed int8 weights, the folded biases, multipliers and shifts;
- ``vectors/layer_<i>_{in,out}.bin``: each layer's int8 input and the reference's int8 output;
- ``Makefile`` (``make csim`` builds with the host compiler and checks every layer), ``run_hls.tcl``
  and ``README.md`` (how to open the project in Vitis HLS).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from backends.accel.compiler import Program

SOURCES = ("accel_core.h", "accel_core.cpp", "host_driver.c")
_HLS_DIR = Path(__file__).with_name("hls")


def config_header(program: Program) -> str:
    c = program.config
    return (
        "/* Generated: the accelerator configuration this program was compiled for. */\n"
        "#ifndef ACCEL_CONFIG_H\n#define ACCEL_CONFIG_H\n"
        f"/* target: {c.text} */\n"
        f"#define BLOCK_IN {c.block_in}\n#define BLOCK_OUT {c.block_out}\n"
        f"#define INP_HALF_ROWS {c.inp_rows}\n#define WGT_HALF_BLOCKS {c.wgt_blocks}\n#define ACC_HALF_ROWS {c.acc_rows}\n"
        f"#define CLOCK_MHZ {c.clock_mhz}\n#define BUS_BYTES {c.bus_bytes}\n#endif\n"
    )


def write_project(program: Program, folder: Path, vectors: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None) -> list[Path]:
    """Write the HLS project into ``folder``; ``vectors`` maps layer index -> (int8 input, int8 output)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SOURCES:
        shutil.copyfile(_HLS_DIR / name, folder / name)
        written.append(folder / name)
    files = {
        "accel_config.h": config_header(program).encode(),
        "program.bin": program.program_bytes(),
        "weights.bin": bytes(program.weights),
        "params.bin": np.array(program.params, "<i4").tobytes(),
        "Makefile": _MAKEFILE.encode(),
        "run_hls.tcl": _TCL.format(part="xczu9eg-ffvb1156-2-e", period=1000.0 / program.config.clock_mhz).encode(),
        "README.md": _readme(program).encode(),
    }
    for name, data in files.items():
        _write_atomic(folder / name, data)
        written.append(folder / name)
    if vectors:
        (folder / "vectors").mkdir(exist_ok=True)
        for index, (x, y) in vectors.items():
            for suffix, array in (("in", x), ("out", y)):
                path = folder / "vectors" / f"layer_{index}_{suffix}.bin"
                _write_atomic(path, np.ascontiguousarray(array, np.int8).tobytes())
                written.append(path)
    return written


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _readme(program: Program) -> str:
    c = program.config
    lines = [
        "# int8 GEMM accelerator: HLS project",
        "",
        f"Configuration: `{c.text}` ({c.block_in}x{c.block_out} MACs, {c.inp_kib}/{c.wgt_kib}/{c.acc_kib} KiB "
        f"input/weight/accumulator buffers, {c.bus_bytes}-byte bus, {c.clock_mhz} MHz).",
        f"Program: {len(program.layers)} offloaded layers, {len(program.instructions())} instructions, "
        f"{len(program.weights)} bytes of packed weights.",
        "",
        "## C simulation (host compiler only)",
        "",
        "    make csim        # builds accel_host with g++/gcc and checks every layer against vectors/",
        "",
        "`accel_host . check` runs each layer's instructions on `vectors/layer_<i>_in.bin` and compares the",
        "int8 result with `vectors/layer_<i>_out.bin` (written by the numpy reference of the integer",
        "semantics). `accel_host . run LAYER in.bin out.bin` runs one layer on any input.",
        "",
        "## Vitis HLS (not run here: no Vitis installation on the machine this project was generated on)",
        "",
        "    vitis_hls -f run_hls.tcl",
        "",
        "opens a project `accel_prj` with top function `accel_core` (`accel_core.cpp`, `accel_config.h`,",
        "`accel_core.h`), `host_driver.c` as the testbench (argument `check`, run from this folder), then runs",
        "C simulation, C synthesis and co-simulation. Change the part (`set_part`) and the clock",
        "(`create_clock`) for your board. In the GUI: File > Open Project or New Project, add the three",
        "kernel files as sources, `host_driver.c` as the test bench with argument `check`, top function",
        "`accel_core`.",
        "",
        "The kernel executes instructions in order; the double-buffered halves in the instruction stream",
        "let a dataflow implementation (separate load, compute and store modules exchanging dependency",
        "tokens, as in VTA) overlap them. The cycle estimate in the report assumes that overlap.",
    ]
    return "\n".join(lines) + "\n"


_MAKEFILE = """CC ?= gcc
CXX ?= g++
CFLAGS ?= -O2
accel_host: accel_core.cpp host_driver.c accel_core.h accel_config.h
\t$(CXX) $(CFLAGS) -c accel_core.cpp -o accel_core.o
\t$(CC) $(CFLAGS) -c host_driver.c -o host_driver.o
\t$(CXX) accel_core.o host_driver.o -o accel_host
csim: accel_host
\t./accel_host . check
.PHONY: csim
"""

_TCL = """open_project accel_prj
set_top accel_core
add_files accel_core.cpp
add_files accel_core.h
add_files accel_config.h
add_files -tb host_driver.c
add_files -tb program.bin
add_files -tb weights.bin
add_files -tb params.bin
add_files -tb vectors
open_solution solution1 -flow_target vivado
set_part {part}
create_clock -period {period:.3f} -name default
csim_design -argv "check"
csynth_design
cosim_design -argv "check"
exit
"""
