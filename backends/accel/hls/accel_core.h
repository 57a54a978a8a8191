/* The int8 GEMM core: instruction set and top function (shared by the kernel and the host driver).
 *
 * Every instruction is ACCEL_INSN_WORDS int32 words; word 0 is the opcode. Buffers are addressed in
 * rows: an input row is BLOCK_IN int8 values, a weight block BLOCK_OUT x BLOCK_IN int8 values, an
 * accumulator row BLOCK_OUT int32 values. The compiler places consecutive tiles in alternate halves of
 * each buffer (double buffering), so load, compute and store of neighbouring tiles can overlap.
 */
#ifndef ACCEL_CORE_H
#define ACCEL_CORE_H

#include <stdint.h>
#include "accel_config.h"

#define ACCEL_INSN_WORDS 32

enum accel_opcode {
    OP_LAYER = 1,    /* set the layer registers (geometry, zero points, clamp, offsets) */
    OP_LOAD_INP = 2, /* DRAM activations -> input buffer, im2col addressing, pads read zx */
    OP_LOAD_WGT = 3, /* DRAM packed weights -> weight buffer */
    OP_GEMM = 4,     /* acc (+)= inp x wgt over a tile; init=1 starts from the folded bias */
    OP_STORE = 5     /* acc -> requantize, clamp -> DRAM activations */
};

/* OP_LAYER word indices */
enum accel_layer_word {
    L_KIND = 1, L_C, L_H, L_W, L_KH, L_KW, L_SH, L_SW, L_PT, L_PL, L_DH, L_DW, L_OH, L_OW,
    L_K, L_N, L_M, L_COFF, L_NOFF, L_NTOTAL, L_ZX, L_ZY, L_LO, L_HI, L_WOFF, L_POFF, L_KB, L_NB, L_ROWLEN
};

#ifdef __cplusplus
extern "C" {
#endif
void accel_core(const int32_t *insns, int count, const int8_t *wgt, const int32_t *prm,
                const int8_t *act_in, int8_t *act_out);
#ifdef __cplusplus
}
#endif

#endif
