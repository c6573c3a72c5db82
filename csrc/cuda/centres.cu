// Body-centre peaks on the GPU, one block per image (see common/centres.h): the block's threads
// test the pixels in parallel and append the peaks' keys to the image's slice of a scratch
// buffer; then K rounds of a block-wide max pick the best key below the previous round's, which
// is the next peak in rank order. Nothing returns to the host.
#include <cuda_runtime.h>

#include "../common/centres.h"
#include "ops.h"

namespace hmr {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ uint64_t block_max(uint64_t v, uint64_t* warp_max) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const uint64_t other = __shfl_down_sync(0xFFFFFFFFu, v, offset);
    v = other > v ? other : v;
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  v = threadIdx.x < kWarps ? warp_max[threadIdx.x] : 0;
  if (warp == 0)
    for (int offset = kWarps / 2; offset > 0; offset /= 2) {
      const uint64_t other = __shfl_down_sync(0xFFFFFFFFu, v, offset);
      v = other > v ? other : v;
    }
  return v;  // valid in thread 0
}

__global__ void centre_peaks_kernel(CentreParams p, uint64_t* scratch) {
  __shared__ int num_candidates;
  __shared__ uint64_t warp_max[kWarps];
  __shared__ uint64_t previous;
  const int b = blockIdx.x;
  const int64_t plane = (int64_t)p.H * p.W;
  const float* img = p.heatmap + b * plane;
  uint64_t* candidates = scratch + b * plane;
  if (threadIdx.x == 0) {
    num_candidates = 0;
    previous = ~0ull;
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < plane; i += kThreads) {
    const int y = (int)(i / p.W), x = (int)(i % p.W);
    if (is_centre_peak(img, p.H, p.W, y, x, p.radius, p.threshold))
      candidates[atomicAdd(&num_candidates, 1)] = centre_peak_key(img[i], (int32_t)i);
  }
  __syncthreads();
  const int n = num_candidates < p.max_peaks ? num_candidates : p.max_peaks;
  for (int k = 0; k < n; ++k) {
    const uint64_t below = previous;
    uint64_t best = 0;
    for (int i = threadIdx.x; i < num_candidates; i += kThreads) {
      const uint64_t key = candidates[i];
      if (key < below && key > best) best = key;
    }
    best = block_max(best, warp_max);
    if (threadIdx.x == 0) {
      previous = best;
      write_centre_slot(p, b, k, centre_key_index(best));
    }
    __syncthreads();
  }
  for (int k = n + threadIdx.x; k < p.max_peaks; k += kThreads) write_centre_slot(p, b, k, -1);
  if (threadIdx.x == 0) p.count[b] = n;
}

}  // namespace

std::string centre_peaks(const CentreParams& p, uint64_t* scratch, uintptr_t stream) {
  if (p.B == 0) return {};
  centre_peaks_kernel<<<p.B, kThreads, 0, (cudaStream_t)stream>>>(p, scratch);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

}  // namespace cuda
}  // namespace hmr
