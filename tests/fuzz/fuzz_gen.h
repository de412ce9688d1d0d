/*
 * The API fuzzer's input generator: one random descriptor and plan options per case, drawn
 * from a source of random bits (a seeded generator, or libFuzzer's bytes).
 *
 * Every field of the public structs is generated in fuzz_gen.c's field table functions
 * (gen_tensor, gen_desc_fields, gen_variants, gen_options); a field the API grows is added
 * there, once, and every driver fuzzes it.  The serving layouts' members come from
 * gen_serving_fields and their device data from gen_serving_data.
 */
#ifndef FUZZ_GEN_H
#define FUZZ_GEN_H

#include "polyattn.h"

#include <stddef.h>
#include <stdint.h>

/* The first published sizes of the growing structs: smaller is refused, larger accepted. */
#define FUZZ_DESC_V1_SIZE (offsetof(polyattn_attention_desc, mask) + sizeof(polyattn_mask))
#define FUZZ_OPTIONS_V1_SIZE (offsetof(polyattn_plan_options, deterministic) + sizeof(int))

/* Bounds of the serving data a small case carries. */
#define FUZZ_MAX_SEQS 64
#define FUZZ_MAX_TABLE 1024

/* Random bits: splitmix64 from a seed, or bytes of a libFuzzer input (zeros once spent). */
typedef struct fuzz_src {
    uint64_t state;
    const uint8_t *data;
    size_t size, at;
} fuzz_src;

void fuzz_src_seed(fuzz_src *src, uint64_t seed);
void fuzz_src_bytes(fuzz_src *src, const uint8_t *data, size_t size);
uint64_t fuzz_u64(fuzz_src *src);
uint64_t fuzz_below(fuzz_src *src, uint64_t n); /* [0, n), n > 0 */

typedef enum fuzz_profile {
    FUZZ_ANY = 0,   /* extreme dimensions, strides, enums and sizes */
    FUZZ_SMALL = 1, /* valid-looking small problems (devices that compile kernels per shape) */
} fuzz_profile;

typedef struct fuzz_case {
    /* The descriptor sits at the start of a larger buffer so that a struct_size above
     * sizeof (a caller built against a newer header) stays readable. */
    union {
        polyattn_attention_desc desc;
        unsigned char desc_room[sizeof(polyattn_attention_desc) + 64];
    } d;
    union {
        polyattn_plan_options options;
        unsigned char options_room[sizeof(polyattn_plan_options) + 64];
    } o;
    int pass_options; /* 0: plan_create gets NULL options */
    int small;        /* every dimension small: the driver may allocate and run it */
    /* Serving layouts: the int32 device data of a small case (fuzz_gen_case draws it from
     * the descriptor, valid unless serving_bad says one value was broken) and which extra
     * tensors the driver passes (a required one left out, an unasked one given). */
    int serving;     /* the descriptor uses a serving layout */
    int serving_bad; /* one offset, length or block index made invalid (or none exists) */
    int32_t cu_q[FUZZ_MAX_SEQS + 1], cu_kv[FUZZ_MAX_SEQS + 1], seqused[FUZZ_MAX_SEQS];
    int32_t table[FUZZ_MAX_TABLE];
    int drop_extra; /* 0: pass what the plan needs; 1..6: leave out or add tensor k - 1 */
} fuzz_case;

void fuzz_gen_case(fuzz_src *src, fuzz_profile profile, fuzz_case *c);

#endif
