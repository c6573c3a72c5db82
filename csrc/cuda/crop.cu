// Batched affine crops on the GPU: one thread per output pixel (see common/crop.h).
#include <cuda_runtime.h>

#include "../common/crop.h"
#include "ops.h"

namespace hmr {
namespace cuda {
namespace {

__global__ void crop_kernel(CropParams p) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const int64_t plane = (int64_t)p.S * p.S;
  if (i >= (int64_t)p.N * plane) return;
  const int n = (int)(i / plane), y = (int)((i % plane) / p.S), x = (int)(i % p.S);
  crop_pixel(p, n, y, x);
}

}  // namespace

std::string crop_affine(const CropParams& p, uintptr_t stream) {
  const int64_t n = (int64_t)p.N * p.S * p.S;
  if (n == 0) return {};
  crop_kernel<<<(unsigned)((n + 255) / 256), 256, 0, (cudaStream_t)stream>>>(p);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

}  // namespace cuda
}  // namespace hmr
