/*
 * The API fuzzer's input generator: one random descriptor and plan options per case, drawn
 * from a source of random bits (a seeded generator, or libFuzzer's bytes).
 *
 * Every field of the public structs is generated in fuzz_gen.c's field table functions
 * (gen_tensor, gen_desc_fields, gen_variants, gen_options); a field the API grows (varlen
 * offsets, block tables) is added there, once, and every driver fuzzes it.
 */
#ifndef FUZZ_GEN_H
#define FUZZ_GEN_H

#include "polyattn.h"

#include <stddef.h>
#include <stdint.h>

/* The first published sizes of the growing structs: smaller is refused, larger accepted. */
#define FUZZ_DESC_V1_SIZE (offsetof(polyattn_attention_desc, mask) + sizeof(polyattn_mask))
#define FUZZ_OPTIONS_V1_SIZE (offsetof(polyattn_plan_options, deterministic) + sizeof(int))

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
} fuzz_case;

void fuzz_gen_case(fuzz_src *src, fuzz_profile profile, fuzz_case *c);

#endif
