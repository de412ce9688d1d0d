/*
 * OpenCL backward, beyond the conformance table: with the deterministic option, dQ, dK and
 * dV are bitwise identical over repeated calls (outputs poisoned before each), for the
 * unfused, fused and flash algorithms (fused runs the flash backward kernels; CTest runs
 * this again with POLYATTN_FORCE=opencl.bwd=tiled for the GPU kernels), GQA + causal +
 * strided layouts, f32 and bf16; and the same
 * plans agree with the host reference (pa_tk_run_backward, deterministic).
 */
#include "pa_testkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNS 5

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

static void repeat_bitwise(polyattn_context *ctx, const char *case_name, polyattn_dtype dtype,
                           polyattn_algo algo)
{
    const pa_tk_case *c = pa_tk_find_case(case_name);
    pa_tk_problem p;
    polyattn_plan *plan = NULL;
    polyattn_buffer *b[9] = {0}, *ws = NULL, *fws = NULL; /* q k v o dO lse dq dk dv */
    void *first[3] = {0}, *now[3] = {0}, *dob = NULL;
    size_t es = polyattn_dtype_size(dtype), bytes[3];
    float *dof = NULL;
    int init = 0;
    if (!c) {
        printf("FAIL: no case %s\n", case_name);
        failures++;
        return;
    }
    CHECK(pa_tk_problem_init(&p, c, dtype, 7) == POLYATTN_STATUS_SUCCESS, "inputs");
    init = 1;
    bytes[0] = p.q_elems * es, bytes[1] = p.k_elems * es, bytes[2] = p.v_elems * es;
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_backward = 1;
    opt.deterministic = 1;
    CHECK(polyattn_plan_create(ctx, &p.desc, &opt, &plan) == POLYATTN_STATUS_SUCCESS,
          "plan %s %s %s: %s", case_name, polyattn_algo_name(algo), polyattn_dtype_name(dtype),
          polyattn_context_last_error(ctx));
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK(polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_SUCCESS, "info");
    uint64_t sizes[9] = {bytes[0],        bytes[1], bytes[2], p.o_elems * es, p.o_elems * es,
                         p.lse_elems * 4, bytes[0], bytes[1], bytes[2]};
    for (int i = 0; i < 9; i++)
        CHECK(polyattn_buffer_alloc(ctx, sizes[i], &b[i]) == POLYATTN_STATUS_SUCCESS, "alloc");
    if (info.workspace_bytes)
        CHECK(polyattn_buffer_alloc(ctx, info.workspace_bytes, &fws) == POLYATTN_STATUS_SUCCESS,
              "alloc");
    if (info.backward_workspace_bytes)
        CHECK(polyattn_buffer_alloc(ctx, info.backward_workspace_bytes, &ws) ==
                  POLYATTN_STATUS_SUCCESS,
              "alloc");
    /* dO: random, gaps included (never read). */
    dof = malloc(p.o_elems * sizeof *dof);
    dob = malloc(p.o_elems * es);
    CHECK(dof && dob, "host memory");
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, pa_tk_hash(case_name, 99));
    for (size_t i = 0; i < p.o_elems; i++)
        dof[i] = (float)pa_tk_rng_uniform(&rng);
    pa_tk_encode(dob, dof, p.o_elems, dtype);
    CHECK(polyattn_buffer_write(b[0], 0, p.q_data, bytes[0]) == 0 &&
              polyattn_buffer_write(b[1], 0, p.k_data, bytes[1]) == 0 &&
              polyattn_buffer_write(b[2], 0, p.v_data, bytes[2]) == 0 &&
              polyattn_buffer_write(b[4], 0, dob, p.o_elems * es) == 0,
          "upload");
    CHECK(polyattn_forward(plan, b[0], b[1], b[2], b[3], b[5], NULL, fws) == 0, "forward: %s",
          polyattn_context_last_error(ctx));
    for (int i = 0; i < 3; i++) {
        first[i] = malloc(bytes[i]);
        now[i] = malloc(bytes[i]);
        CHECK(first[i] && now[i], "host memory");
    }
    for (int run = 0; run < RUNS; run++) {
        for (int i = 0; i < 3; i++) {
            pa_tk_poison(now[i], bytes[i] / es, dtype);
            CHECK(polyattn_buffer_write(b[6 + i], 0, now[i], bytes[i]) == 0, "poison");
        }
        CHECK(polyattn_backward(plan, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], ws) ==
                  POLYATTN_STATUS_SUCCESS,
              "backward: %s", polyattn_context_last_error(ctx));
        for (int i = 0; i < 3; i++) {
            CHECK(polyattn_buffer_read(b[6 + i], 0, run ? now[i] : first[i], bytes[i]) == 0,
                  "read");
            CHECK(!run || memcmp(now[i], first[i], bytes[i]) == 0,
                  "%s %s %s: d%c of run %d differs from run 0", case_name, polyattn_algo_name(algo),
                  polyattn_dtype_name(dtype), "qkv"[i], run);
        }
    }
    printf("PASS %-26s %-7s %-4s: %d deterministic backward runs bitwise identical\n", case_name,
           polyattn_algo_name(algo), polyattn_dtype_name(dtype), RUNS);
    {
        pa_tk_backward_result r;
        polyattn_status st = pa_tk_run_backward(ctx, &p, algo, 1, &r);
        CHECK(st == POLYATTN_STATUS_SUCCESS && r.pass,
              "%s %s %s deterministic vs host: %s dQ %.3g dK %.3g dV %.3g", case_name,
              polyattn_algo_name(algo), polyattn_dtype_name(dtype), r.message, r.dq_max_rel,
              r.dk_max_rel, r.dv_max_rel);
        printf("PASS %-26s %-7s %-4s: deterministic plan agrees with the host reference\n",
               case_name, polyattn_algo_name(algo), polyattn_dtype_name(dtype));
    }
done:
    for (int i = 0; i < 3; i++) {
        free(first[i]);
        free(now[i]);
    }
    free(dof);
    free(dob);
    for (int i = 0; i < 9; i++)
        polyattn_buffer_free(b[i]);
    polyattn_buffer_free(ws);
    polyattn_buffer_free(fws);
    polyattn_plan_destroy(plan);
    if (init) pa_tk_problem_free(&p);
}

/* Head dims beyond the table (the tiled kernels' 512 and 1024 tiles, head_dim != head_dim_v,
 * GQA, padded strides, both causal masks) against the host reference. */
static void big_heads(polyattn_context *ctx)
{
    static const pa_tk_case cases[] = {
        {"d1024_causal_br_13x21", 1, 2, 1, 13, 21, 1024, 1024, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT,
         PA_TK_BHSD, 0.f, 1.f, 0},
        {"d200_dv320_gqa_pad_70x45", 2, 4, 2, 70, 45, 200, 320, POLYATTN_MASK_CAUSAL_TOP_LEFT,
         PA_TK_BSHD_PAD, 0.f, 1.f, 0},
    };
    static const polyattn_dtype dtypes[] = {POLYATTN_DTYPE_F32, POLYATTN_DTYPE_BF16};
    for (int ci = 0; ci < 2; ci++)
        for (int di = 0; di < 2; di++) {
            pa_tk_problem p;
            pa_tk_backward_result r;
            memset(&r, 0, sizeof r);
            if (pa_tk_problem_init(&p, &cases[ci], dtypes[di], 11) != POLYATTN_STATUS_SUCCESS) {
                printf("FAIL %s: inputs\n", cases[ci].name);
                failures++;
                continue;
            }
            polyattn_status st = pa_tk_run_backward(ctx, &p, POLYATTN_ALGO_FLASH, 1, &r);
            if (st != POLYATTN_STATUS_SUCCESS || !r.pass) {
                printf("FAIL %s %s flash vs host: %s %s dQ %.3g dK %.3g dV %.3g\n", cases[ci].name,
                       polyattn_dtype_name(dtypes[di]), polyattn_status_name(st), r.message,
                       r.dq_max_rel, r.dk_max_rel, r.dv_max_rel);
                failures++;
            } else {
                printf("PASS %-26s flash   %-4s: agrees with the host reference (dQ %.3g dK %.3g "
                       "dV %.3g)\n",
                       cases[ci].name, polyattn_dtype_name(dtypes[di]), r.dq_max_rel, r.dk_max_rel,
                       r.dv_max_rel);
            }
            pa_tk_problem_free(&p);
        }
}

int main(int argc, char **argv)
{
    /* --flash-only: the flash plans alone (the tiled CTest run: unfused does not change with
     * opencl.bwd and fused runs the same backward kernels). */
    const int flash_only = argc > 1 && strcmp(argv[1], "--flash-only") == 0;
    int count = 0;
    const char *reason = NULL;
    if (polyattn_device_count(POLYATTN_BACKEND_OPENCL, &count, &reason) != 0 || count == 0) {
        printf("SKIP: no OpenCL device (%s)\n", reason ? reason : "?");
        return PA_TK_SKIP;
    }
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_OPENCL, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: context: %s\n", polyattn_last_error());
        return 1;
    }
    static const char *const cases[] = {"bshd_pad_gqa_47x61_d64", "causal_br_53x37_d64"};
    static const polyattn_algo algos[] = {POLYATTN_ALGO_UNFUSED, POLYATTN_ALGO_FUSED,
                                          POLYATTN_ALGO_FLASH};
    static const polyattn_dtype dtypes[] = {POLYATTN_DTYPE_F32, POLYATTN_DTYPE_BF16};
    for (int ci = 0; ci < 2; ci++)
        for (int ai = flash_only ? 2 : 0; ai < 3; ai++)
            for (int di = 0; di < 2; di++)
                repeat_bitwise(ctx, cases[ci], dtypes[di], algos[ai]);
    big_heads(ctx);
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
