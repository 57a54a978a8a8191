"""The core's instruction set: opcodes and word layout, shared by the compiler (which writes the
stream), the cycle model (which plays it) and accel_core.h (which executes it)."""

INSN_WORDS = 32
OP_LAYER, OP_LOAD_INP, OP_LOAD_WGT, OP_GEMM, OP_STORE = 1, 2, 3, 4, 5
MAGIC, VERSION = 0x4C454341, 1
# OP_LAYER word order, as in accel_core.h's accel_layer_word
LAYER_WORDS = ("kind", "c", "h", "w", "kh", "kw", "sh", "sw", "pt", "pl", "dh", "dw", "oh", "ow", "k", "n", "m",
               "c_off", "n_off", "n_total", "zx", "zy", "lo", "hi", "w_off", "p_off", "kb", "nb", "row_len")
