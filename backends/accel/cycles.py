"""The cycle model: the instruction stream played on three overlapping units (an estimate).

Units and costs (``c = BLOCK_IN``, ``o = BLOCK_OUT``, ``B`` = bus bytes per cycle, ``D`` = DMA latency):
- load: ``LOAD_INP`` moves ``rows * kblocks * c`` bytes (im2col rows are read from DRAM as they
  are, without a line buffer), ``LOAD_WGT`` ``nblocks * kblocks * c * o`` bytes, each
  ``D + ceil(bytes / B)`` cycles;
- compute: the MAC array is weight-stationary and systolic; a GEMM runs ``nblocks * kblocks``
  folds of ``rows + 2c + o - 2`` cycles each (weights shift in over ``c`` cycles, inputs are
  skewed over ``c - 1``, results drain over ``o - 1``), as SCALE-Sim's weight-stationary model counts;
- store: ``STORE`` requantizes and writes ``rows * nblocks * o`` bytes, ``D + ceil(bytes / B)``.

Dependencies (double buffering): a GEMM waits for the loads of the buffer halves it reads; a load
into a half waits for the last GEMM that read it; a GEMM that starts an accumulator half waits for
the store that last drained it; a store waits for its GEMMs. Each unit runs its instructions in
order. Layers run one after another (the host runs CPU ops in between).

A layer is compute bound when its compute cycles are at least its load + store cycles.
Utilization is ``MACs / (cycles * c * o)``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from backends.accel.isa import OP_GEMM, OP_LOAD_INP, OP_LOAD_WGT, OP_STORE
from backends.accel.config import AccelConfig

DMA_LATENCY = 32


@dataclasses.dataclass(frozen=True)
class Cycles:
    total: int
    load: int
    compute: int
    store: int
    tiles: int

    @property
    def bound(self) -> str:
        return "compute" if self.compute >= self.load + self.store else "memory"

    def __add__(self, other: Cycles) -> Cycles:
        return Cycles(self.total + other.total, self.load + other.load, self.compute + other.compute,
                      self.store + other.store, self.tiles + other.tiles)


ZERO = Cycles(0, 0, 0, 0, 0)


def fold_cycles(rows: int, config: AccelConfig) -> int:
    return rows + 2 * config.block_in + config.block_out - 2


def gemm_cycles(insns: np.ndarray, config: AccelConfig) -> Cycles:
    """Play one GEMM's instructions (its OP_LAYER first) on the load, compute and store units."""
    bi, bo, bus = config.block_in, config.block_out, config.bus_bytes
    load_free = compute_free = store_free = 0
    inp_ready = {}  # buffer base -> cycle its last load finished
    wgt_ready = {}
    inp_read_done = {}  # buffer base -> cycle the last GEMM reading it finished
    wgt_read_done = {}
    acc_drained = {}  # accumulator base -> cycle the last store from it finished
    acc_written = {}
    load = compute = store = tiles = 0
    end = 0
    for word in insns:
        op = int(word[0])
        if op == OP_LOAD_INP or op == OP_LOAD_WGT:
            base = int(word[5])
            size = word[2] * word[4] * (bi if op == OP_LOAD_INP else bi * bo)
            cost = DMA_LATENCY + math.ceil(int(size) / bus)
            read_done = inp_read_done if op == OP_LOAD_INP else wgt_read_done
            start = max(load_free, read_done.get(base, 0))
            load_free = start + cost
            (inp_ready if op == OP_LOAD_INP else wgt_ready)[base] = load_free
            load += cost
        elif op == OP_GEMM:
            rows, nblocks, kblocks = int(word[1]), int(word[2]), int(word[3])
            inp_base, wgt_base, acc_base, init = int(word[4]), int(word[5]), int(word[6]), int(word[7])
            cost = nblocks * kblocks * fold_cycles(rows, config)
            start = max(compute_free, inp_ready.get(inp_base, 0), wgt_ready.get(wgt_base, 0))
            if init:
                start = max(start, acc_drained.get(acc_base, 0))
            compute_free = start + cost
            inp_read_done[inp_base] = compute_free
            wgt_read_done[wgt_base] = compute_free
            acc_written[acc_base] = compute_free
            compute += cost
            tiles += 1
        elif op == OP_STORE:
            rows, nblocks, acc_base = int(word[2]), int(word[4]), int(word[5])
            cost = DMA_LATENCY + math.ceil(rows * nblocks * bo / bus)
            start = max(store_free, acc_written.get(acc_base, 0))
            store_free = start + cost
            acc_drained[acc_base] = store_free
            store += cost
            end = max(end, store_free)
    return Cycles(max(end, load_free, compute_free), load, compute, store, tiles)


def layer_rows(program, clock_mhz: int | None = None) -> list[dict]:
    """One row per offloaded layer: shape, tiling, cycles by unit, bound, utilization."""
    config = program.config
    rows = []
    for index, layer in enumerate(program.layers):
        gemms = program.layer_gemms(index)
        cycles = ZERO
        for gemm in gemms:
            cycles = cycles + gemm_cycles(gemm.insns, config)
        first = gemms[0]
        rows.append({
            "layer": layer.name, "op": layer.op, "m": first.m, "k": first.k, "n": first.n, "groups": len(gemms),
            "macs": layer.macs, "tiling": f"{first.tm}x{first.tk * config.block_in}x{first.tn * config.block_out}",
            "tiles": cycles.tiles, "cycles": cycles.total, "load_cycles": cycles.load, "compute_cycles": cycles.compute,
            "store_cycles": cycles.store, "bound": cycles.bound,
            "utilization": round(layer.macs / (cycles.total * config.block_in * config.block_out), 4) if cycles.total else 0.0,
            "instructions": int(sum(len(g.insns) for g in gemms)),
        })
    return rows
