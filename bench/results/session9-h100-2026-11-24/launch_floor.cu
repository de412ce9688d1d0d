// Launch floor: GPU time per kernel of a CUDA graph of 20 back-to-back launches of a kernel
// that does (almost) nothing, shaped like the wide flash kernel at 16x128 (128 blocks of 256
// threads, 2-block clusters, ~190 KB dynamic smem), with and without programmatic dependent launch.
#include <cstdio>
#include <cuda_runtime.h>
__global__ void k_empty(int *p, int pdl, int spin)
{
    if (pdl) { asm volatile("griddepcontrol.wait;" ::: "memory"); asm volatile("griddepcontrol.launch_dependents;"); }
    long long t0 = clock64();
    while (clock64() - t0 < spin) {}
    if (threadIdx.x == 0 && p) p[blockIdx.x] += 1;
}
int main()
{
    int *buf; cudaMalloc(&buf, 4096 * 4); cudaMemset(buf, 0, 4096*4);
    cudaStream_t st; cudaStreamCreate(&st);
    cudaFuncSetAttribute(k_empty, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
    for (int spin : {0, 8000})
    for (int blocks : {128, 256})
    for (int cluster : {1, 2})
    for (int smem : {0, 190 * 1024})
    for (int pdl : {0, 1}) {
        cudaGraph_t g; cudaGraphExec_t ge;
        cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal);
        for (int i = 0; i < 20; ++i) {
            cudaLaunchConfig_t cfg = {}; cudaLaunchAttribute at[2]; cfg.attrs = at;
            cfg.gridDim = dim3(blocks); cfg.blockDim = dim3(256); cfg.dynamicSmemBytes = smem; cfg.stream = st;
            if (cluster == 2) { at[cfg.numAttrs].id = cudaLaunchAttributeClusterDimension; at[cfg.numAttrs].val.clusterDim.x = 2; at[cfg.numAttrs].val.clusterDim.y = 1; at[cfg.numAttrs++].val.clusterDim.z = 1; }
            if (pdl) { at[cfg.numAttrs].id = cudaLaunchAttributeProgrammaticStreamSerialization; at[cfg.numAttrs++].val.programmaticStreamSerializationAllowed = 1; }
            cudaLaunchKernelEx(&cfg, k_empty, buf, pdl, spin);
        }
        cudaStreamEndCapture(st, &g);
        cudaGraphInstantiate(&ge, g, 0);
        cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
        for (int w = 0; w < 5; ++w) cudaGraphLaunch(ge, st);
        float best = 1e9;
        for (int r = 0; r < 30; ++r) {
            cudaEventRecord(a, st); cudaGraphLaunch(ge, st); cudaEventRecord(b, st); cudaEventSynchronize(b);
            float ms; cudaEventElapsedTime(&ms, a, b); if (ms < best) best = ms;
        }
        printf("spin %5d blocks %3d cluster %d smem %6d pdl %d: %.2f us per kernel (%s)\n", spin, blocks, cluster, smem, pdl, best * 1000 / 20, cudaGetErrorString(cudaGetLastError()));
        cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
    }
    return 0;
}
