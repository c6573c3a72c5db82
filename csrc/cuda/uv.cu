// IUV feature warping and part visibility (eq. 1) on the GPU. Warping scatters with float
// atomics (sums are order-dependent in the last bits; the CPU build is the bit-stable one).
#include <cuda_runtime.h>

#include "ops.h"

namespace hmr {
namespace cuda {
namespace {

__global__ void texel_kernel(IuvWarpParams p, int* texel) {
  const int64_t HW = (int64_t)p.H * p.W, SS = (int64_t)p.S * p.S;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (int64_t)p.B * HW) return;
  const int64_t b = i / HW, px = i % HW;
  const float* I = p.iuv + b * 3 * HW;
  const int t = iuv_texel(I[px], I[HW + px], I[2 * HW + px], p.fg_threshold, p.S);
  texel[i] = t;
  if (t < 0) return;
  float* out = p.out + (b * (p.C + 3) + p.C) * SS;
  atomicAdd(out + t, normalised_coord((int)(px % p.W), p.W));
  atomicAdd(out + SS + t, normalised_coord((int)(px / p.W), p.H));
  atomicAdd(out + 2 * SS + t, 1.0f);
}

__global__ void scatter_kernel(IuvWarpParams p, const int* texel) {
  const int64_t HW = (int64_t)p.H * p.W, SS = (int64_t)p.S * p.S;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;  // over B*C*HW
  if (i >= (int64_t)p.B * p.C * HW) return;
  const int64_t px = i % HW, bc = i / HW, b = bc / p.C, c = bc % p.C;
  const int t = texel[b * HW + px];
  if (t < 0) return;
  atomicAdd(p.out + (b * (p.C + 3) + c) * SS + t, p.features[i]);
}

__global__ void normalise_kernel(IuvWarpParams p) {
  const int64_t SS = (int64_t)p.S * p.S;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;  // over B*SS
  if (i >= (int64_t)p.B * SS) return;
  const int64_t b = i / SS, t = i % SS;
  float* base = p.out + b * (p.C + 3) * SS + t;
  float* occ = base + (int64_t)(p.C + 2) * SS;
  const float n = *occ;
  const float inv = n > 0.f ? 1.0f / n : 0.f;
  for (int c = 0; c < p.C + 2; ++c) base[(int64_t)c * SS] *= inv;
  *occ = n > 0.f ? 1.0f : 0.0f;
}

__global__ void visibility_kernel(PartVisibilityParams p) {
  extern __shared__ int counts[];  // covered[num_parts], total[num_parts]
  const int b = blockIdx.x;
  for (int k = threadIdx.x; k < 2 * p.num_parts; k += blockDim.x) counts[k] = 0;
  __syncthreads();
  const int64_t SS = (int64_t)p.S * p.S;
  const float* occ = p.occupancy + b * SS;
  for (int64_t t = threadIdx.x; t < SS; t += blockDim.x) {
    const int k = p.part_map[t];
    if (k < 0 || k >= p.num_parts) continue;
    atomicAdd(&counts[p.num_parts + k], 1);
    if (occ[t] > 0.5f) atomicAdd(&counts[k], 1);
  }
  __syncthreads();
  for (int k = threadIdx.x; k < p.num_parts; k += blockDim.x)
    p.out[(int64_t)b * p.num_parts + k] = visibility_from_counts(counts[k], counts[p.num_parts + k]);
}

inline unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

}  // namespace

int64_t iuv_warp_workspace_floats(int B, int H, int W) { return (int64_t)B * H * W; }

std::string iuv_warp(const IuvWarpParams& p, float* workspace, uintptr_t stream) {
  cudaStream_t s = (cudaStream_t)stream;
  const int64_t HW = (int64_t)p.H * p.W, SS = (int64_t)p.S * p.S;
  const int64_t out_n = (int64_t)p.B * (p.C + 3) * SS;
  if (out_n > 0) cudaMemsetAsync(p.out, 0, sizeof(float) * out_n, s);
  int* texel = reinterpret_cast<int*>(workspace);
  if (p.B * HW > 0) {
    texel_kernel<<<blocks_for(p.B * HW, 256), 256, 0, s>>>(p, texel);
    if (p.C > 0) scatter_kernel<<<blocks_for((int64_t)p.B * p.C * HW, 256), 256, 0, s>>>(p, texel);
  }
  if (p.B * SS > 0) normalise_kernel<<<blocks_for(p.B * SS, 256), 256, 0, s>>>(p);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

std::string part_visibility(const PartVisibilityParams& p, uintptr_t stream) {
  if (p.B == 0) return {};
  visibility_kernel<<<p.B, 256, sizeof(int) * 2 * p.num_parts, (cudaStream_t)stream>>>(p);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

}  // namespace cuda
}  // namespace hmr
