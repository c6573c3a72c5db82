// Rotation conversions and VisHMR's merge (eq. 4, eq. 5) on the GPU: one thread per element,
// per sample (kinematic slerp) or per (sample, hypothesis) (matching).
#include <cuda_runtime.h>

#include "../common/kinematics.h"
#include "ops.h"

namespace hmr {
namespace cuda {
namespace {

template <typename T>
__global__ void convert_kernel(int kind, const T* in, T* out, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  convert_rotation_one<T>(kind, in + rotation_in_size(kind) * i, out + rotation_out_size(kind) * i);
}

template <typename T>
__global__ void kinematic_slerp_kernel(const T* abs_vis, const T* rel_glob, const T* weight,
                                       const int64_t* parents, int64_t B, int J, T* rel_out,
                                       T* abs_out) {
  const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const int64_t m = (int64_t)J * 9;
  kinematic_slerp_one<T>(abs_vis + b * m, rel_glob + b * m, weight + b * J, parents, J,
                         rel_out + b * m, abs_out + b * m);
}

template <typename T>
__global__ void score_kernel(const T* abs_vis, const T* hyp_rel, const T* weight,
                             const int64_t* parents, int64_t B, int64_t K, int J, T* score,
                             T* scratch) {
  const int64_t bk = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (bk >= B * K) return;
  const int64_t b = bk / K, m = (int64_t)J * 9;
  Quat<T> q_vis[kMaxJoints];
  for (int i = 0; i < J; ++i) q_vis[i] = mat_to_quat(load_mat3(abs_vis + b * m + 9 * i));
  score[bk] = hypothesis_score<T>(q_vis, hyp_rel + bk * m, weight + b * J, parents, J,
                                  scratch + bk * m);
}

template <typename T>
__global__ void argmax_kernel(const T* score, int64_t B, int64_t K, int64_t* best) {
  const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  int64_t arg = 0;
  for (int64_t k = 1; k < K; ++k)
    if (score[b * K + k] > score[b * K + arg]) arg = k;
  best[b] = arg;
}

inline unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

inline std::string last_error() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string enter_device_of(uintptr_t device_ptr, int* previous) {
  *previous = -1;
  if (device_ptr == 0) return {};
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(device_ptr)) != cudaSuccess) {
    return last_error();
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) {
    return "input is not in device memory";
  }
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) return last_error();
  if (current != attr.device) {
    if (cudaSetDevice(attr.device) != cudaSuccess) return last_error();
    *previous = current;
  }
  return {};
}

void restore_device(int previous) {
  if (previous >= 0) cudaSetDevice(previous);
}

template <typename T>
std::string convert_rotations(int kind, const T* in, T* out, int64_t n, uintptr_t stream) {
  if (n == 0) return {};
  convert_kernel<T><<<blocks_for(n, 256), 256, 0, (cudaStream_t)stream>>>(kind, in, out, n);
  return last_error();
}

template <typename T>
std::string kinematic_slerp(const T* abs_vis, const T* rel_glob, const T* weight,
                            const int64_t* parents, int64_t B, int J, T* rel_out, T* abs_out,
                            uintptr_t stream) {
  if (B == 0) return {};
  kinematic_slerp_kernel<T><<<blocks_for(B, 64), 64, 0, (cudaStream_t)stream>>>(
      abs_vis, rel_glob, weight, parents, B, J, rel_out, abs_out);
  return last_error();
}

template <typename T>
std::string match_hypotheses(const T* abs_vis, const T* hyp_rel, const T* weight,
                             const int64_t* parents, int64_t B, int64_t K, int J, int64_t* best,
                             T* score, T* scratch, uintptr_t stream) {
  if (B == 0) return {};
  cudaStream_t s = (cudaStream_t)stream;
  score_kernel<T><<<blocks_for(B * K, 64), 64, 0, s>>>(abs_vis, hyp_rel, weight, parents, B, K,
                                                       J, score, scratch);
  argmax_kernel<T><<<blocks_for(B, 64), 64, 0, s>>>(score, B, K, best);
  return last_error();
}

#define HMR_INSTANTIATE(T)                                                                      \
  template std::string convert_rotations<T>(int, const T*, T*, int64_t, uintptr_t);             \
  template std::string kinematic_slerp<T>(const T*, const T*, const T*, const int64_t*, int64_t, \
                                          int, T*, T*, uintptr_t);                              \
  template std::string match_hypotheses<T>(const T*, const T*, const T*, const int64_t*,         \
                                           int64_t, int64_t, int, int64_t*, T*, T*, uintptr_t);
HMR_INSTANTIATE(float)
HMR_INSTANTIATE(double)
#undef HMR_INSTANTIATE

}  // namespace cuda
}  // namespace hmr
