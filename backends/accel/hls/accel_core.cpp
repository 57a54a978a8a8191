/* HLS kernel of the int8 GEMM core (synthesizable subset: fixed-bound loops, static buffers,
 * int8_t/int32_t/int64_t arithmetic, no dynamic memory). C simulation: compile with any C++ compiler.
 *
 * Semantics (one layer): acc[m][n] = bias'[n] + sum_k x[m][k] * w[n][k], with bias' = bias - zx * sum_k w
 * folded by the compiler and padding read as zx; y = zy + ((acc * m0[n] + 2^(s[n]-1)) >> s[n]);
 * y = clamp(y, lo, hi); stored as int8.
 */
#include "accel_core.h"

#define INP_DEPTH (2 * INP_HALF_ROWS)
#define WGT_DEPTH (2 * WGT_HALF_BLOCKS)
#define ACC_DEPTH (2 * ACC_HALF_ROWS)

struct layer_regs {
    int32_t w[ACCEL_INSN_WORDS];
};

static int8_t fetch_input(const layer_regs &L, const int8_t *act_in, int32_t m, int32_t k) {
    if (k >= L.w[L_K]) return 0; /* reduction padding: the weight is 0 there too */
    if (L.w[L_KIND] == 1) return act_in[m * L.w[L_ROWLEN] + L.w[L_COFF] + k];
    const int32_t window = L.w[L_KH] * L.w[L_KW];
    const int32_t c = L.w[L_COFF] + k / window;
    const int32_t kh = (k % window) / L.w[L_KW];
    const int32_t kw = k % L.w[L_KW];
    const int32_t pixels = L.w[L_OH] * L.w[L_OW];
    const int32_t b = m / pixels;
    const int32_t p = m % pixels;
    const int32_t ih = (p / L.w[L_OW]) * L.w[L_SH] - L.w[L_PT] + kh * L.w[L_DH];
    const int32_t iw = (p % L.w[L_OW]) * L.w[L_SW] - L.w[L_PL] + kw * L.w[L_DW];
    if (ih < 0 || ih >= L.w[L_H] || iw < 0 || iw >= L.w[L_W]) return (int8_t)L.w[L_ZX];
    return act_in[((b * L.w[L_C] + c) * L.w[L_H] + ih) * L.w[L_W] + iw];
}

static int8_t requantize(int32_t acc, int32_t m0, int32_t shift, const layer_regs &L) {
    const int64_t product = (int64_t)acc * (int64_t)m0;
    const int64_t rounded = (product + ((int64_t)1 << (shift - 1))) >> shift;
    int64_t y = rounded + L.w[L_ZY];
    if (y < L.w[L_LO]) y = L.w[L_LO];
    if (y > L.w[L_HI]) y = L.w[L_HI];
    return (int8_t)y;
}

extern "C" void accel_core(const int32_t *insns, int count, const int8_t *wgt, const int32_t *prm,
                           const int8_t *act_in, int8_t *act_out) {
#pragma HLS INTERFACE m_axi port=insns offset=slave bundle=gmem0
#pragma HLS INTERFACE m_axi port=wgt offset=slave bundle=gmem1
#pragma HLS INTERFACE m_axi port=prm offset=slave bundle=gmem0
#pragma HLS INTERFACE m_axi port=act_in offset=slave bundle=gmem2
#pragma HLS INTERFACE m_axi port=act_out offset=slave bundle=gmem2
#pragma HLS INTERFACE s_axilite port=count
#pragma HLS INTERFACE s_axilite port=return
    static int8_t inp_buf[INP_DEPTH][BLOCK_IN];
#pragma HLS ARRAY_PARTITION variable=inp_buf complete dim=2
    static int8_t wgt_buf[WGT_DEPTH][BLOCK_OUT][BLOCK_IN];
#pragma HLS ARRAY_PARTITION variable=wgt_buf complete dim=2
#pragma HLS ARRAY_PARTITION variable=wgt_buf complete dim=3
    static int32_t acc_buf[ACC_DEPTH][BLOCK_OUT];
#pragma HLS ARRAY_PARTITION variable=acc_buf complete dim=2
    layer_regs L;
    for (int i = 0; i < ACCEL_INSN_WORDS; ++i) L.w[i] = 0;

insn_loop:
    for (int pc = 0; pc < count; ++pc) {
        const int32_t *in = insns + pc * ACCEL_INSN_WORDS;
        const int32_t op = in[0];
        if (op == OP_LAYER) {
            for (int i = 0; i < ACCEL_INSN_WORDS; ++i) L.w[i] = in[i];
        } else if (op == OP_LOAD_INP) {
            const int32_t m0 = in[1], rows = in[2], kb0 = in[3], kblocks = in[4], base = in[5];
        load_inp:
            for (int32_t it = 0; it < INP_DEPTH; ++it) {
#pragma HLS PIPELINE II=1
                if (it >= rows * kblocks) break;
                const int32_t r = it / kblocks, kb = it % kblocks;
                for (int i = 0; i < BLOCK_IN; ++i) {
#pragma HLS UNROLL
                    inp_buf[base + it][i] = fetch_input(L, act_in, m0 + r, (kb0 + kb) * BLOCK_IN + i);
                }
            }
        } else if (op == OP_LOAD_WGT) {
            const int32_t nb0 = in[1], nblocks = in[2], kb0 = in[3], kblocks = in[4], base = in[5];
        load_wgt:
            for (int32_t it = 0; it < WGT_DEPTH; ++it) {
#pragma HLS PIPELINE II=1
                if (it >= nblocks * kblocks) break;
                const int32_t nb = it / kblocks, kb = it % kblocks;
                const int8_t *src = wgt + L.w[L_WOFF] + ((nb0 + nb) * L.w[L_KB] + kb0 + kb) * (BLOCK_OUT * BLOCK_IN);
                for (int o = 0; o < BLOCK_OUT; ++o) {
#pragma HLS UNROLL
                    for (int i = 0; i < BLOCK_IN; ++i) {
#pragma HLS UNROLL
                        wgt_buf[base + it][o][i] = src[o * BLOCK_IN + i];
                    }
                }
            }
        } else if (op == OP_GEMM) {
            const int32_t rows = in[1], nblocks = in[2], kblocks = in[3];
            const int32_t inp_base = in[4], wgt_base = in[5], acc_base = in[6], init = in[7], nb0 = in[8];
            const int32_t total = rows * nblocks * kblocks;
        gemm:
            /* kb outermost: consecutive iterations update different accumulator rows (II=1) */
            for (int32_t it = 0; it < INP_DEPTH * WGT_DEPTH; ++it) {
#pragma HLS PIPELINE II=1
                if (it >= total) break;
                const int32_t r = it % rows, nb = (it / rows) % nblocks, kb = it / (rows * nblocks);
                const int32_t arow = acc_base + r * nblocks + nb;
                for (int o = 0; o < BLOCK_OUT; ++o) {
#pragma HLS UNROLL
                    int32_t sum = (init && kb == 0) ? prm[L.w[L_POFF] + (nb0 + nb) * BLOCK_OUT + o] : acc_buf[arow][o];
                    for (int i = 0; i < BLOCK_IN; ++i) {
#pragma HLS UNROLL
                        sum += (int32_t)inp_buf[inp_base + r * kblocks + kb][i] *
                               (int32_t)wgt_buf[wgt_base + nb * kblocks + kb][o][i];
                    }
                    acc_buf[arow][o] = sum;
                }
            }
        } else if (op == OP_STORE) {
            const int32_t m0 = in[1], rows = in[2], nb0 = in[3], nblocks = in[4], acc_base = in[5];
            const int32_t padded = L.w[L_NB] * BLOCK_OUT;
        store:
            for (int32_t it = 0; it < ACC_DEPTH; ++it) {
#pragma HLS PIPELINE II=1
                if (it >= rows * nblocks) break;
                const int32_t r = it / nblocks, nb = it % nblocks;
                const int32_t m = m0 + r;
                for (int o = 0; o < BLOCK_OUT; ++o) {
#pragma HLS UNROLL
                    const int32_t n = (nb0 + nb) * BLOCK_OUT + o;
                    if (n >= L.w[L_N]) continue;
                    const int32_t mult = prm[L.w[L_POFF] + padded + n];
                    const int32_t shift = prm[L.w[L_POFF] + 2 * padded + n];
                    const int8_t y = requantize(acc_buf[acc_base + it][o], mult, shift, L);
                    const int32_t channel = L.w[L_NOFF] + n;
                    if (L.w[L_KIND] == 1) {
                        act_out[m * L.w[L_NTOTAL] + channel] = y;
                    } else {
                        const int32_t pixels = L.w[L_OH] * L.w[L_OW];
                        act_out[((m / pixels) * L.w[L_NTOTAL] + channel) * pixels + m % pixels] = y;
                    }
                }
            }
        }
    }
}
