/* Host driver: loads the instruction stream and packed weights, runs layers on the core.
 *
 * Files (little-endian): program.bin = header (8 int32: magic 'ACEL', version, layers, instructions,
 * BLOCK_IN, BLOCK_OUT, weight bytes, parameter words), a table of 4 int32 per layer (first
 * instruction, instruction count, input elements, output elements), then the instructions;
 * weights.bin = packed int8 weights; params.bin = int32 folded biases, multipliers and shifts.
 *
 *   accel_host DIR check                  run every layer on DIR/vectors/layer_<i>_{in,out}.bin
 *   accel_host DIR run LAYER IN.bin OUT.bin
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "accel_core.h"

#define ACCEL_MAGIC 0x4C454341

typedef struct {
    int32_t header[8];
    int32_t *table;
    int32_t *insns;
    int8_t *weights;
    int32_t *params;
} accel_program;

static void *read_file(const char *dir, const char *name, long *size) {
    char path[4096];
    if (name[0] == '/') snprintf(path, sizeof path, "%s", name);
    else snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = malloc(*size > 0 ? *size : 1);
    if (data && fread(data, 1, *size, f) != (size_t)*size) { free(data); data = NULL; }
    fclose(f);
    return data;
}

accel_program *accel_open(const char *dir) {
    long size = 0, wsize = 0, psize = 0;
    int32_t *raw = (int32_t *)read_file(dir, "program.bin", &size);
    if (!raw || size < 32 || raw[0] != ACCEL_MAGIC) { free(raw); return NULL; }
    if (raw[4] != BLOCK_IN || raw[5] != BLOCK_OUT) {
        fprintf(stderr, "program is for a %dx%d core, this build is %dx%d\n", raw[4], raw[5], BLOCK_IN, BLOCK_OUT);
        free(raw);
        return NULL;
    }
    accel_program *p = (accel_program *)calloc(1, sizeof *p);
    memcpy(p->header, raw, sizeof p->header);
    p->table = raw + 8;
    p->insns = p->table + 4 * raw[2];
    p->weights = (int8_t *)read_file(dir, "weights.bin", &wsize);
    p->params = (int32_t *)read_file(dir, "params.bin", &psize);
    if (!p->weights || !p->params || wsize != raw[6] || psize != 4L * raw[7]) {
        fprintf(stderr, "weights.bin or params.bin is missing or has the wrong size\n");
        return NULL;
    }
    return p;
}

int accel_layer_count(const accel_program *p) { return p->header[2]; }
int accel_layer_input_elems(const accel_program *p, int layer) { return p->table[4 * layer + 2]; }
int accel_layer_output_elems(const accel_program *p, int layer) { return p->table[4 * layer + 3]; }

int accel_run_layer(const accel_program *p, int layer, const int8_t *in, int8_t *out) {
    if (layer < 0 || layer >= p->header[2]) return -1;
    const int32_t first = p->table[4 * layer], count = p->table[4 * layer + 1];
    accel_core(p->insns + (long)first * ACCEL_INSN_WORDS, count, p->weights, p->params, in, out);
    return 0;
}

#ifndef ACCEL_NO_MAIN
static int check_all(const char *dir, const accel_program *p) {
    int failures = 0;
    for (int layer = 0; layer < accel_layer_count(p); ++layer) {
        char name[256];
        long in_size = 0, out_size = 0;
        snprintf(name, sizeof name, "vectors/layer_%d_in.bin", layer);
        int8_t *in = (int8_t *)read_file(dir, name, &in_size);
        snprintf(name, sizeof name, "vectors/layer_%d_out.bin", layer);
        int8_t *expected = (int8_t *)read_file(dir, name, &out_size);
        if (!in || !expected) { free(in); free(expected); continue; }
        int8_t *out = (int8_t *)calloc(out_size, 1);
        accel_run_layer(p, layer, in, out);
        long wrong = 0;
        for (long i = 0; i < out_size; ++i) wrong += out[i] != expected[i];
        printf("layer %d: %ld outputs, %ld differ from the reference\n", layer, out_size, wrong);
        failures += wrong != 0;
        free(in); free(expected); free(out);
    }
    return failures;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: accel_host DIR check | accel_host DIR run LAYER IN.bin OUT.bin\n"); return 2; }
    accel_program *p = accel_open(argv[1]);
    if (!p) { fprintf(stderr, "cannot load the program in %s\n", argv[1]); return 1; }
    if (strcmp(argv[2], "check") == 0) return check_all(argv[1], p) ? 1 : 0;
    if (strcmp(argv[2], "run") == 0 && argc == 6) {
        int layer = atoi(argv[3]);
        long in_size = 0;
        int8_t *in = (int8_t *)read_file(".", argv[4], &in_size);
        if (!in || in_size != accel_layer_input_elems(p, layer)) { fprintf(stderr, "bad input file\n"); return 1; }
        long n = accel_layer_output_elems(p, layer);
        int8_t *out = (int8_t *)calloc(n, 1);
        accel_run_layer(p, layer, in, out);
        FILE *f = fopen(argv[5], "wb");
        if (!f || fwrite(out, 1, n, f) != (size_t)n) { fprintf(stderr, "cannot write %s\n", argv[5]); return 1; }
        fclose(f);
        return 0;
    }
    fprintf(stderr, "usage: accel_host DIR check | accel_host DIR run LAYER IN.bin OUT.bin\n");
    return 2;
}
#endif
