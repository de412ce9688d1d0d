// How many 2-block clusters of 256 threads with the pair kernel's shared memory can be resident at once.
#include <cstdio>
#include <cuda_runtime.h>
__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(256, 1) dummy(float *p) { extern __shared__ float s[]; s[threadIdx.x] = 1.f; if (p) p[threadIdx.x] = s[threadIdx.x ^ 1]; }
__global__ void __launch_bounds__(256, 1) plain(float *p) { extern __shared__ float s[]; s[threadIdx.x] = 1.f; if (p) p[threadIdx.x] = s[threadIdx.x ^ 1]; }
int main() {
  int sizes[] = {164864, 214016, 120000, 48000};
  for (int smem : sizes) {
    cudaFuncSetAttribute(dummy, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    cudaFuncSetAttribute(plain, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(128); cfg.blockDim = dim3(256); cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute at; at.id = cudaLaunchAttributeClusterDimension; at.val.clusterDim.x = 2; at.val.clusterDim.y = 1; at.val.clusterDim.z = 1;
    cfg.attrs = &at; cfg.numAttrs = 1;
    int n = -1; cudaError_t e = cudaOccupancyMaxActiveClusters(&n, (void *)dummy, &cfg);
    int b = -1; cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, plain, 256, smem);
    printf("smem %d: max active 2-block clusters %d (%s); plain blocks per SM %d\n", smem, n, cudaGetErrorString(e), b);
  }
  return 0;
}
