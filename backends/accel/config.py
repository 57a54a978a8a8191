"""The accelerator's configuration: a VTA-style int8 GEMM core, from the ``accel`` target string.

``--target "accel -block=16x16 -clock=200 -inp-buf=32 -wgt-buf=64 -acc-buf=128 -bus=16"``:

- ``-block=INxOUT``: the MAC array, BLOCK_IN (reduction lanes) x BLOCK_OUT (output channels), each a
  power of two in 2..64;
- ``-clock=MHZ``: the clock the cycle model converts to time;
- ``-inp-buf``, ``-wgt-buf``, ``-acc-buf``: on-chip buffer sizes in KiB (input int8 rows of BLOCK_IN,
  weight int8 blocks of BLOCK_IN x BLOCK_OUT, accumulator int32 rows of BLOCK_OUT);
- ``-bus=BYTES``: bytes the DRAM port moves per cycle (16 = a 128-bit AXI port);
- ``-depthwise``: offload depthwise convolutions too (as GEMMs with one input channel per group);
  off by default, they then stay on the CPU.

Rules:
- Every buffer is split in two halves (double buffering), so each half must hold at least one tile
  row: an input half at least 1 row, a weight half at least 1 block, an accumulator half at least
  1 row. A configuration that does not fit is a one-line ``UsageError`` naming the buffer and the
  smallest size that fits.
- Presets (``backends.target.PRESETS``): ``accel`` (16x16, 200 MHz), ``accel-small`` (8x8,
  32/32/32 KiB, 150 MHz, 8-byte bus), ``accel-large`` (32x32, 128/256/256 KiB, 250 MHz, 32-byte bus).
- ``resources()`` estimates MAC units (one DSP slice each) and buffer bits (BRAM18 blocks of
  18 Kib); it is an estimate of the storage and multipliers the design needs, not a synthesis result.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

from ir.errors import UsageError

DEFAULTS: Mapping[str, object] = {"block": "16x16", "clock": 200, "inp-buf": 32, "wgt-buf": 64, "acc-buf": 128, "bus": 16}

_BRAM18_BITS = 18 * 1024


@dataclasses.dataclass(frozen=True)
class AccelConfig:
    block_in: int = 16
    block_out: int = 16
    clock_mhz: int = 200
    inp_kib: int = 32
    wgt_kib: int = 64
    acc_kib: int = 128
    bus_bytes: int = 16
    depthwise: bool = False

    # Depths in the units the instructions address, for one half of each double buffer.
    @property
    def inp_rows(self) -> int:
        return self.inp_kib * 1024 // self.block_in // 2

    @property
    def wgt_blocks(self) -> int:
        return self.wgt_kib * 1024 // (self.block_in * self.block_out) // 2

    @property
    def acc_rows(self) -> int:
        return self.acc_kib * 1024 // (4 * self.block_out) // 2

    @property
    def text(self) -> str:
        return (f"accel -block={self.block_in}x{self.block_out} -clock={self.clock_mhz} -inp-buf={self.inp_kib} "
                f"-wgt-buf={self.wgt_kib} -acc-buf={self.acc_kib} -bus={self.bus_bytes}"
                + (" -depthwise" if self.depthwise else ""))

    def resources(self) -> dict[str, int]:
        """MAC units (DSP slices, one per int8 multiply-accumulate) and buffer bits (estimate)."""
        bits = {"inp": self.inp_kib * 8192, "wgt": self.wgt_kib * 8192, "acc": self.acc_kib * 8192}
        return {
            "mac_units": self.block_in * self.block_out,
            "dsp_estimate": self.block_in * self.block_out,
            "buffer_bits": sum(bits.values()),
            "bram18_estimate": sum(math.ceil(b / _BRAM18_BITS) for b in bits.values()),
            **{f"{name}_buffer_bits": value for name, value in bits.items()},
        }


def config_from_options(options: Mapping[str, object], shown: str = "accel") -> AccelConfig:
    """An ``AccelConfig`` from parsed ``-name=value`` options; a bad one is a one-line ``UsageError``."""
    values = {**DEFAULTS, **options}
    block = str(values["block"])
    parts = block.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--target '{shown}': -block={block} must be INxOUT, e.g. -block=16x16")
    block_in, block_out = (int(p) for p in parts)
    for side in (block_in, block_out):
        if side < 2 or side > 64 or side & (side - 1):
            raise UsageError(f"--target '{shown}': -block={block}: each side must be a power of two in 2..64")
    config = AccelConfig(block_in, block_out, int(values["clock"]), int(values["inp-buf"]), int(values["wgt-buf"]),
                         int(values["acc-buf"]), int(values["bus"]), bool(values.get("depthwise", False)))
    _check_fits(config, shown)
    return config


def _check_fits(config: AccelConfig, shown: str) -> None:
    need = {
        "inp-buf": (config.inp_rows, 2 * config.block_in),
        "wgt-buf": (config.wgt_blocks, 2 * config.block_in * config.block_out),
        "acc-buf": (config.acc_rows, 2 * 4 * config.block_out),
    }
    for name, (depth, bytes_needed) in need.items():
        if depth < 1:
            kib = math.ceil(bytes_needed / 1024)
            raise UsageError(
                f"--target '{shown}': -{name} is too small for -block={config.block_in}x{config.block_out}: "
                f"two halves need {bytes_needed} bytes; give -{name}={kib} or more (KiB)"
            )
