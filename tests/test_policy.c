/*
 * The CUDA rows of AUTO's default order (backends/cuda/cuda_policy.c), compiled into this test: each
 * rule's measured winner comes first on the shapes it was measured on (bench/results/).
 */
#include "../backends/cuda/cuda_policy.h"

#include <stdio.h>
#include <string.h>

static int failures = 0;

static void expect_on(const char *arch, polyattn_mask mask, const char *what, polyattn_dtype dtype,
                      int64_t batch, int64_t seq_q, int64_t seq_kv, int64_t head_dim,
                      polyattn_algo first)
{
    pa_problem p;
    memset(&p, 0, sizeof p);
    p.dtype = dtype;
    p.mask = mask;
    p.batch = batch, p.heads_q = p.heads_kv = 1;
    p.seq_q = seq_q, p.seq_kv = seq_kv;
    p.head_dim = p.head_dim_v = head_dim;
    p.scale = 1.f;
    polyattn_algo order[3];
    const char *why = NULL;
    pa_cuda_auto_order(arch, &p, order, &why);
    const int distinct = order[0] != order[1] && order[1] != order[2] && order[0] != order[2];
    if (order[0] != first || !distinct || !why || !*why) {
        printf("FAIL %s (%s, mask %d): first %s, expected %s (%s)\n", what, arch, (int)mask,
               polyattn_algo_name(order[0]), polyattn_algo_name(first), why ? why : "no reason");
        ++failures;
    }
}

/* Rules that hold on any NVIDIA device: checked with no arch, on sm_80 and on sm_90. */
static void expect(const char *what, polyattn_dtype dtype, int64_t batch, int64_t seq_q,
                   int64_t seq_kv, int64_t head_dim, polyattn_algo first)
{
    const char *archs[] = {"", "sm_80", "sm_90"};
    for (int i = 0; i < 3; i++)
        expect_on(archs[i], POLYATTN_MASK_NONE, what, dtype, batch, seq_q, seq_kv, head_dim, first);
}

int main(void)
{
    const polyattn_algo U = POLYATTN_ALGO_UNFUSED, L = POLYATTN_ALGO_FLASH;
    const polyattn_mask N = POLYATTN_MASK_NONE, C = POLYATTN_MASK_CAUSAL_TOP_LEFT;
    /* the article's shapes (bench/results/2026-11-24-h100-cuda-flash-vs-unfused-article-shapes.md) */
    expect("f16 1x4096 D1024", POLYATTN_DTYPE_F16, 1, 4096, 4096, 1024, U);
    expect_on("sm_80", C, "bf16 8x512 D768", POLYATTN_DTYPE_BF16, 8, 512, 512, 768, U);
    expect("f16 16x128 D512", POLYATTN_DTYPE_F16, 16, 128, 128, 512, L);
    expect("bf16 16x128 D512", POLYATTN_DTYPE_BF16, 16, 128, 128, 512, L);
    expect("f32 1x4096 D1024", POLYATTN_DTYPE_F32, 1, 4096, 4096, 1024, L);
    expect("f32 16x128 D512", POLYATTN_DTYPE_F32, 16, 128, 128, 512, L);
    /* head dims without a wide kernel keep unfused first at any length */
    expect("f16 16x128 D640", POLYATTN_DTYPE_F16, 16, 128, 128, 640, U);
    /* FlashAttention-2 shapes, decode, f32 narrow */
    expect("f16 8x2048 D128", POLYATTN_DTYPE_F16, 8, 2048, 2048, 128, L);
    /* decode: the tensor-core serving kernel with key splits (sm_80+), cuBLAS for f32
     * (bench/results/2026-12-07-h100-decode-serving-kernel.txt) */
    expect("f16 decode 1x8192 D128", POLYATTN_DTYPE_F16, 1, 1, 8192, 128, L);
    expect_on("sm_75", N, "f16 decode 1x8192 D128", POLYATTN_DTYPE_F16, 1, 1, 8192, 128, U);
    expect("f32 decode 1x8192 D128", POLYATTN_DTYPE_F32, 1, 1, 8192, 128, U);
    /* f32 at head dims 64/128: the 3xTF32 tile kernel (sm_80+), 53-66 TFLOP/s against
     * unfused's 37 (bench/results/2026-12-07-h200-f32-tile-vs-torch.txt); other head dims
     * and older devices keep cuBLAS unfused first */
    expect("f32 2x1024 D64", POLYATTN_DTYPE_F32, 2, 1024, 1024, 64, L);
    expect("f32 2x1024 D96", POLYATTN_DTYPE_F32, 2, 1024, 1024, 96, U);
    expect_on("sm_75", N, "f32 2x1024 D128", POLYATTN_DTYPE_F32, 2, 1024, 1024, 128, U);
    /* sm_90's wgmma flash against unfused, 16-bit D 512/768
     * (bench/results/2026-11-25-h100-cuda-wgmma-flash-vs-unfused.md) */
    expect_on("sm_90", C, "bf16 8x512 D768 causal", POLYATTN_DTYPE_BF16, 8, 512, 512, 768, L);
    expect_on("sm_90", C, "f16 1x4096 D512 causal", POLYATTN_DTYPE_F16, 1, 4096, 4096, 512, L);
    expect_on("sm_90", N, "f16 4x1024 D512", POLYATTN_DTYPE_F16, 4, 1024, 1024, 512, L);
    expect_on("sm_90", N, "f16 2x2048 D512", POLYATTN_DTYPE_F16, 2, 2048, 2048, 512, U);
    expect_on("sm_90", C, "f16 4x1024 D768 causal", POLYATTN_DTYPE_F16, 4, 1024, 1024, 768, L);
    expect_on("sm_90", C, "f16 2x2048 D768 causal", POLYATTN_DTYPE_F16, 2, 2048, 2048, 768, U);
    expect_on("sm_90", N, "f16 8x256 D768", POLYATTN_DTYPE_F16, 8, 256, 256, 768, L);
    expect_on("sm_90", N, "bf16 8x512 D768", POLYATTN_DTYPE_BF16, 8, 512, 512, 768, U);
    expect_on("sm_80", C, "f16 1x4096 D512 causal", POLYATTN_DTYPE_F16, 1, 4096, 4096, 512, U);
    printf("test_policy: %d failures\n", failures);
    return failures ? 1 : 0;
}
