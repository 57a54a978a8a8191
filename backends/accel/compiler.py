"""Compiling offloaded layers into the core's instruction stream, packed weights and parameters.

Rules:
- Each layer becomes one GEMM per group (``M x K x N``: output pixels x C/group*KH*KW x N/group,
  or input rows x K x N); K is padded to BLOCK_IN, N to BLOCK_OUT with zero weights.
- Weights are packed per GEMM as ``[N/BLOCK_OUT][K/BLOCK_IN][BLOCK_OUT][BLOCK_IN]`` int8; the
  parameters as ``bias'`` (the int32 bias minus ``zx * sum_k w``), multipliers and shifts (int32).
- A tile is ``TM`` rows x ``TK`` input blocks x ``TN`` output blocks, sized so that one tile fits
  half of each buffer (``TM*TK`` input rows, ``TN*TK`` weight blocks, ``TM*TN`` accumulator rows);
  among the candidate tilings the compiler keeps the one the cycle model finds fastest.
- Loop order: m-tiles, n-tiles, k-tiles. A tile already in a buffer half is not loaded again; a new
  one goes into the half the last GEMM did not read, so a load overlaps the GEMM before it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from backends.accel.config import AccelConfig
from backends.accel.cycles import gemm_cycles  # the search ranks tilings by the cycle model
from backends.accel.isa import INSN_WORDS, LAYER_WORDS, MAGIC, OP_GEMM, OP_LAYER, OP_LOAD_INP, OP_LOAD_WGT, OP_STORE, VERSION  # noqa: F401 - re-exported
from backends.accel.semantics import IntLayer


@dataclasses.dataclass(frozen=True)
class Gemm:
    layer: int
    group: int
    m: int
    k: int
    n: int
    kb: int
    nb: int
    tm: int
    tk: int
    tn: int
    insns: np.ndarray  # [count, INSN_WORDS] int32


@dataclasses.dataclass
class Program:
    config: AccelConfig
    layers: list[IntLayer]
    gemms: list[Gemm]
    weights: bytearray
    params: list[int]

    def layer_gemms(self, index: int) -> list[Gemm]:
        return [g for g in self.gemms if g.layer == index]

    def instructions(self) -> np.ndarray:
        return np.concatenate([g.insns for g in self.gemms]) if self.gemms else np.zeros((0, INSN_WORDS), np.int32)

    def program_bytes(self) -> bytes:
        header = [MAGIC, VERSION, len(self.layers), sum(len(g.insns) for g in self.gemms),
                  self.config.block_in, self.config.block_out, len(self.weights), len(self.params)]
        table, start = [], 0
        for index, layer in enumerate(self.layers):
            count = sum(len(g.insns) for g in self.layer_gemms(index))
            table += [start, count, int(np.prod(layer.in_shape)), int(np.prod(layer.out_shape))]
            start += count
        return np.array(header + table, "<i4").tobytes() + self.instructions().astype("<i4").tobytes()


def compile_layers(layers: list[IntLayer], config: AccelConfig, tiling=None) -> Program:
    """The program for ``layers``; ``tiling(gemm shape) -> (tm, tk, tn)`` overrides the search."""

    program = Program(config, list(layers), [], bytearray(), [])
    bi, bo = config.block_in, config.block_out
    for index, layer in enumerate(layers):
        groups = layer.group
        n_per, c_per = layer.n // groups, (layer.in_shape[1] if layer.kind == "conv" else layer.in_shape[-1]) // groups
        for g in range(groups):
            w = layer.weight[g * n_per:(g + 1) * n_per].reshape(n_per, -1).astype(np.int64)
            m, k, n = layer.m, w.shape[1], n_per
            kb, nb = math.ceil(k / bi), math.ceil(n / bo)
            packed = np.zeros((nb * bo, kb * bi), np.int8)
            packed[:n, :k] = w
            packed = packed.reshape(nb, bo, kb, bi).transpose(0, 2, 1, 3)
            bias = layer.bias[g * n_per:(g + 1) * n_per].astype(np.int64) - layer.x_zero * w.sum(axis=1)
            if np.any(np.abs(bias) >= 2**31):
                raise OverflowError(f"layer {layer.name}: folded bias overflows int32")
            m0, shift = layer.multipliers()
            pad = nb * bo - n
            regs = dict(
                kind=0 if layer.kind == "conv" else 1, k=k, n=n, m=m, c_off=g * c_per, n_off=g * n_per,
                n_total=layer.n, zx=layer.x_zero, zy=layer.y_zero, lo=layer.lo, hi=layer.hi,
                w_off=len(program.weights), p_off=len(program.params), kb=kb, nb=nb,
            )
            if layer.kind == "conv":
                _, c, h, wd = layer.in_shape
                kh, kw = layer.weight.shape[2:]
                regs.update(c=c, h=h, w=wd, kh=kh, kw=kw, sh=layer.strides[0], sw=layer.strides[1], pt=layer.pads[0],
                            pl=layer.pads[1], dh=layer.dilations[0], dw=layer.dilations[1], oh=layer.out_shape[2],
                            ow=layer.out_shape[3])
            else:
                regs.update(row_len=layer.in_shape[-1])
            program.weights += packed.tobytes()
            program.params += [int(v) for v in np.concatenate([bias, np.zeros(pad, np.int64)])]
            program.params += [int(v) for v in np.concatenate([m0[g * n_per:(g + 1) * n_per], np.ones(pad, np.int64)])]
            program.params += [int(v) for v in np.concatenate([shift[g * n_per:(g + 1) * n_per], np.ones(pad, np.int64)])]
            layer_insn = np.zeros(INSN_WORDS, np.int32)
            layer_insn[0] = OP_LAYER
            for i, name in enumerate(LAYER_WORDS, start=1):
                layer_insn[i] = regs.get(name, 0)
            if tiling is not None:
                choices = [tiling(m, kb, nb)]
            else:
                choices = candidate_tilings(m, kb, nb, config)
            best = None
            for tm, tk, tn in choices:
                insns = np.vstack([layer_insn, emit_tiles(m, kb, nb, tm, tk, tn, config)])
                cycles = gemm_cycles(insns, config).total
                if best is None or cycles < best[0]:
                    best = (cycles, tm, tk, tn, insns)
            _, tm, tk, tn, insns = best
            program.gemms.append(Gemm(index, g, m, k, n, kb, nb, tm, tk, tn, insns))
    return program


def candidate_tilings(m: int, kb: int, nb: int, config: AccelConfig) -> list[tuple[int, int, int]]:
    """Tilings (TM, TK, TN) that fit half of each buffer, halving TK and TN from the whole layer."""
    out = []
    for tk in _halvings(kb):
        for tn in _halvings(nb):
            tm = min(m, config.inp_rows // tk, config.acc_rows // tn)
            if tm >= 1 and tn * tk <= config.wgt_blocks:
                out.append((tm, tk, tn))
    if not out:  # one block of each always fits (checked when the config was parsed)
        out.append((min(m, config.inp_rows, config.acc_rows), 1, 1))
    return out


def _halvings(count: int) -> list[int]:
    values, v = [], count
    while True:
        values.append(v)
        if v == 1:
            return values
        v = math.ceil(v / 2)


def emit_tiles(m: int, kb: int, nb: int, tm: int, tk: int, tn: int, config: AccelConfig) -> np.ndarray:
    insns = []
    inp_half, wgt_half, acc_half = config.inp_rows, config.wgt_blocks, config.acc_rows
    inp_slots: list[object] = [None, None]
    wgt_slots: list[object] = [None, None]
    last_inp, last_wgt, acc_slot = 1, 1, 1

    def insn(*words):
        row = np.zeros(INSN_WORDS, np.int32)
        row[: len(words)] = words
        insns.append(row)

    for m0 in range(0, m, tm):
        rows = min(tm, m - m0)
        for nb0 in range(0, nb, tn):
            nblocks = min(tn, nb - nb0)
            acc_slot = 1 - acc_slot
            for kb0 in range(0, kb, tk):
                kblocks = min(tk, kb - kb0)
                inp_tile, wgt_tile = (m0, kb0), (nb0, kb0)
                if inp_tile in inp_slots:
                    last_inp = inp_slots.index(inp_tile)
                else:
                    last_inp = 1 - last_inp
                    inp_slots[last_inp] = inp_tile
                    insn(OP_LOAD_INP, m0, rows, kb0, kblocks, last_inp * inp_half)
                if wgt_tile in wgt_slots:
                    last_wgt = wgt_slots.index(wgt_tile)
                else:
                    last_wgt = 1 - last_wgt
                    wgt_slots[last_wgt] = wgt_tile
                    insn(OP_LOAD_WGT, nb0, nblocks, kb0, kblocks, last_wgt * wgt_half)
                insn(OP_GEMM, rows, nblocks, kblocks, last_inp * inp_half, last_wgt * wgt_half, acc_slot * acc_half,
                     1 if kb0 == 0 else 0, nb0)
            insn(OP_STORE, m0, rows, nb0, nblocks, acc_slot * acc_half)
    return np.array(insns, np.int32)
