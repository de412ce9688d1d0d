/* A program built against an installed polyattn (find_package or pkg-config): one forward
 * on the host backend, checked against a hand computation.
 *
 * One query, two keys, head_dim 2, scale 1: q = (ln 3, 0), k0 = (0, 0), k1 = (1, 0), so the
 * scores are 0 and ln 3 and the softmax weights 1/4 and 3/4.  With v0 = (1, 2) and
 * v1 = (5, 6): o = (1/4 + 15/4, 2/4 + 18/4) = (4, 5).
 *
 * Arguments name the GPU backends the build holds: each must be present in the library as
 * installed, and its device count (0 with a reason on a machine without that device) is
 * printed. */
#include <polyattn.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                                                \
    do {                                                                                           \
        polyattn_status s_ = (call);                                                               \
        if (s_ != POLYATTN_STATUS_SUCCESS) {                                                       \
            fprintf(stderr, "%s: %s (%s)\n", #call, polyattn_status_string(s_),                    \
                    polyattn_last_error());                                                        \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static int check_backends(int argc, char **argv)
{
    static const polyattn_backend all[] = {POLYATTN_BACKEND_CUDA, POLYATTN_BACKEND_HIP,
                                           POLYATTN_BACKEND_OPENCL, POLYATTN_BACKEND_HOST};
    int ok = 1;
    for (int i = 1; i < argc; i++) {
        int found = 0;
        for (size_t b = 0; b < sizeof all / sizeof all[0]; b++) {
            if (strcmp(argv[i], polyattn_backend_name(all[b])) != 0) continue;
            found = polyattn_backend_compiled(all[b]);
            int count = 0;
            const char *reason = NULL;
            polyattn_device_count(all[b], &count, &reason);
            printf("%s: compiled %d, %d device(s)%s%s\n", argv[i], found, count, reason ? ": " : "",
                   reason ? reason : "");
        }
        if (!found) {
            fprintf(stderr, "backend %s is not in the installed library\n", argv[i]);
            ok = 0;
        }
    }
    return ok;
}

int main(int argc, char **argv)
{
    const float q[2] = {logf(3.0f), 0.0f};
    const float k[4] = {0.0f, 0.0f, 1.0f, 0.0f};
    const float v[4] = {1.0f, 2.0f, 5.0f, 6.0f};
    const float expected[2] = {4.0f, 5.0f};
    float o[2] = {-1.0f, -1.0f};

    polyattn_context *ctx;
    CHECK(polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx));
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, POLYATTN_DTYPE_F32, 1, 1, 1, 1, 2, 2, 2);
    desc.scale = 1.0f;
    polyattn_plan *plan;
    CHECK(polyattn_plan_create(ctx, &desc, NULL, &plan));
    polyattn_buffer *bq, *bk, *bv, *bo;
    CHECK(polyattn_buffer_alloc(ctx, sizeof q, &bq));
    CHECK(polyattn_buffer_alloc(ctx, sizeof k, &bk));
    CHECK(polyattn_buffer_alloc(ctx, sizeof v, &bv));
    CHECK(polyattn_buffer_alloc(ctx, sizeof o, &bo));
    CHECK(polyattn_buffer_write(bq, 0, q, sizeof q));
    CHECK(polyattn_buffer_write(bk, 0, k, sizeof k));
    CHECK(polyattn_buffer_write(bv, 0, v, sizeof v));
    CHECK(polyattn_buffer_write(bo, 0, o, sizeof o));
    CHECK(polyattn_forward(plan, bq, bk, bv, bo, NULL, NULL, NULL));
    CHECK(polyattn_buffer_read(bo, 0, o, sizeof o));

    int ok = 1;
    for (int i = 0; i < 2; i++) {
        if (!(fabsf(o[i] - expected[i]) <= 1e-5f)) {
            fprintf(stderr, "o[%d] = %.7f, expected %.7f\n", i, (double)o[i], (double)expected[i]);
            ok = 0;
        }
    }
    printf("polyattn %s: o = (%.6f, %.6f), expected (4, 5): %s\n", polyattn_version_string(),
           (double)o[0], (double)o[1], ok ? "ok" : "WRONG");
    polyattn_buffer_free(bq);
    polyattn_buffer_free(bk);
    polyattn_buffer_free(bv);
    polyattn_buffer_free(bo);
    polyattn_plan_destroy(plan);
    polyattn_context_destroy(ctx);
    if (!check_backends(argc, argv)) ok = 0;
    return ok ? 0 : 1;
}
