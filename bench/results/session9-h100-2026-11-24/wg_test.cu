// Unit check of the wgmma layouts of backends/cuda/wgmma_sm90.cuh: S = A B^T (SS, K-major,
// 64x256 by 64x256) and O = P V (RS, P 64x64 from registers, V 64x256 N-major), against the CPU.
#include "tc_common.cuh"
#include "wgmma_sm90.cuh"
#include <cstdio>
#include <cstdlib>
#include <cmath>
using namespace pa_tc;
__global__ void __launch_bounds__(128, 1) k_test(const __half *A, const __half *B, const __half *P, const __half *V, float *S, float *O)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(16) unsigned char raw[];
    unsigned char *base = raw + ((1024u - (smem_addr(raw) & 1023u)) & 1023u);
    unsigned char *sa = base, *sb = base + 32768, *sv = base + 65536;
    int t = threadIdx.x, warp = t / 32, lane = t % 32, g = lane / 4, t4 = lane % 4;
    for (int i = t; i < 64 * 32; i += 128) {
        int r = i / 32, c = i % 32;
        *(uint4 *)(sa + pa_wg::chunk_offset(64, r, c)) = *(const uint4 *)(A + r * 256 + c * 8);
        *(uint4 *)(sb + pa_wg::chunk_offset(64, r, c)) = *(const uint4 *)(B + r * 256 + c * 8);
        *(uint4 *)(sv + pa_wg::chunk_offset(64, r, c)) = *(const uint4 *)(V + r * 256 + c * 8);
    }
    pa_wg::fence_async_shared();
    __syncthreads();
    float s[32];
    for (int e = 0; e < 32; ++e) s[e] = 0.f;
    pa_wg::fence();
    for (int kk = 0; kk < 16; ++kk) {
        uint32_t off = (kk / 4) * 8192 + (kk % 4) * 32;
        pa_wg::Mma<__half>::ss_m64n64k16(s, pa_wg::desc(smem_addr(sa) + off, 16, 1024), pa_wg::desc(smem_addr(sb) + off, 16, 1024), 1);
    }
    pa_wg::commit(); pa_wg::wait<0>();
    for (int j = 0; j < 8; ++j) for (int e = 0; e < 4; ++e) {
        int row = 16 * warp + g + 8 * (e / 2), col = 8 * j + 2 * t4 + (e % 2);
        S[row * 64 + col] = s[4 * j + e];
    }
    float o[128];
    for (int e = 0; e < 128; ++e) o[e] = 0.f;
    uint32_t pf[4][4];
    for (int kk = 0; kk < 4; ++kk) for (int i = 0; i < 4; ++i) {
        int row = 16 * warp + g + 8 * (i % 2), col = 16 * kk + 8 * (i / 2) + 2 * t4;
        __half2 h = __halves2half2(P[row * 64 + col], P[row * 64 + col + 1]);
        pf[kk][i] = *(uint32_t *)&h;
    }
    pa_wg::fence();
    for (int kk = 0; kk < 4; ++kk)
        pa_wg::Mma<__half>::rs_m64n256k16(o, pf[kk], pa_wg::desc(smem_addr(sv) + kk * 2048, 8192, 1024), 1);
    pa_wg::commit(); pa_wg::wait<0>();
    for (int j = 0; j < 32; ++j) for (int e = 0; e < 4; ++e) {
        int row = 16 * warp + g + 8 * (e / 2), col = 8 * j + 2 * t4 + (e % 2);
        O[row * 256 + col] = o[4 * j + e];
    }
#endif
}
int main()
{
    const int nA = 64 * 256, nP = 64 * 64;
    __half *hA = new __half[nA], *hB = new __half[nA], *hV = new __half[nA], *hP = new __half[nP];
    float *fA = new float[nA], *fB = new float[nA], *fV = new float[nA], *fP = new float[nP];
    srand(1);
    for (int i = 0; i < nA; ++i) { fA[i] = __half2float(hA[i] = __float2half(rand() / (float)RAND_MAX - 0.5f)); fB[i] = __half2float(hB[i] = __float2half(rand() / (float)RAND_MAX - 0.5f)); fV[i] = __half2float(hV[i] = __float2half(rand() / (float)RAND_MAX - 0.5f)); }
    for (int i = 0; i < nP; ++i) fP[i] = __half2float(hP[i] = __float2half(rand() / (float)RAND_MAX));
    __half *dA, *dB, *dV, *dP; float *dS, *dO;
    cudaMalloc(&dA, nA * 2); cudaMalloc(&dB, nA * 2); cudaMalloc(&dV, nA * 2); cudaMalloc(&dP, nP * 2); cudaMalloc(&dS, nP * 4); cudaMalloc(&dO, nA * 4);
    cudaMemcpy(dA, hA, nA * 2, cudaMemcpyHostToDevice); cudaMemcpy(dB, hB, nA * 2, cudaMemcpyHostToDevice); cudaMemcpy(dV, hV, nA * 2, cudaMemcpyHostToDevice); cudaMemcpy(dP, hP, nP * 2, cudaMemcpyHostToDevice);
    cudaFuncSetAttribute(k_test, cudaFuncAttributeMaxDynamicSharedMemorySize, 100 * 1024);
    k_test<<<1, 128, 100 * 1024>>>(dA, dB, dP, dV, dS, dO);
    printf("kernel: %s\n", cudaGetErrorString(cudaDeviceSynchronize()));
    float *S = new float[nP], *O = new float[nA];
    cudaMemcpy(S, dS, nP * 4, cudaMemcpyDeviceToHost); cudaMemcpy(O, dO, nA * 4, cudaMemcpyDeviceToHost);
    double es = 0; int bad = 0;
    for (int r = 0; r < 64; ++r) for (int c = 0; c < 64; ++c) {
        double ref = 0; for (int k = 0; k < 256; ++k) ref += (double)fA[r * 256 + k] * fB[c * 256 + k];
        double e = fabs(ref - S[r * 64 + c]); es = fmax(es, e);
        if (e > 1e-2 && bad++ < 5) printf("S[%d][%d] = %f, ref %f\n", r, c, S[r * 64 + c], ref);
    }
    printf("SS (Q K^T): max err %.3g, bad %d of %d\n", es, bad, nP);
    double eo = 0; bad = 0;
    for (int r = 0; r < 64; ++r) for (int c = 0; c < 256; ++c) {
        double ref = 0; for (int k = 0; k < 64; ++k) ref += (double)fP[r * 64 + k] * fV[k * 256 + c];
        double e = fabs(ref - O[r * 256 + c]); eo = fmax(eo, e);
        if (e > 1e-2 && bad++ < 5) printf("O[%d][%d] = %f, ref %f\n", r, c, O[r * 256 + c], ref);
    }
    printf("RS (P V): max err %.3g, bad %d of %d\n", eo, bad, nA);
    return 0;
}
