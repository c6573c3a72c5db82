// Batched LBS on the GPU (smplx.lbs semantics). Three launches on one stream:
// (1) joint basis: j_regressor applied to v_template and to every shape direction, so the rest
//     joints of any sample are an affine function of its betas (J x 3 x (NB+1) reductions);
// (2) one thread per sample: rest joints, pose feature, rigid transform chain;
// (3) one thread per (sample, vertex): shape + pose blend shapes, then skinning, with the
//     sample's transforms and pose feature staged in shared memory.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "ops.h"

namespace hmr {
namespace cuda {
namespace {

constexpr int kBasisThreads = 256;
constexpr int kVertexThreads = 128;

__global__ void joint_basis_kernel(LbsParams p, float* basis) {
  // basis[(j*3 + d)*(NB+1) + n] = sum_v jreg[j,v] * (n == 0 ? v_template[v,d] : shapedirs[v,d,n-1])
  const int idx = blockIdx.x;
  const int n = idx % (p.NB + 1);
  const int d = (idx / (p.NB + 1)) % 3;
  const int j = idx / (3 * (p.NB + 1));
  float s = 0.f;
  for (int v = threadIdx.x; v < p.V; v += blockDim.x) {
    const float x = n == 0 ? p.v_template[3 * v + d]
                           : p.shapedirs[((int64_t)v * 3 + d) * p.NB + (n - 1)];
    s += p.j_regressor[(int64_t)j * p.V + v] * x;
  }
  __shared__ float red[kBasisThreads];
  red[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) basis[idx] = red[0];
}

__global__ void sample_kernel(LbsParams p, const float* basis, float* pose_feat, float* transforms) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= p.B) return;
  const int P = (p.J - 1) * 9;
  float j_rest[kMaxJoints * 3];
  const float* beta = p.betas + (int64_t)b * p.NB;
  for (int jd = 0; jd < p.J * 3; ++jd) {
    const float* row = basis + (int64_t)jd * (p.NB + 1);
    float s = row[0];
    for (int n = 0; n < p.NB; ++n) s += row[n + 1] * beta[n];
    j_rest[jd] = s;
  }
  const float* R = p.rotmats + (int64_t)b * p.J * 9;
  pose_feature_one(R, p.J, pose_feat + (int64_t)b * P);
  rigid_chain_one(R, j_rest, p.parents, p.J, transforms + (int64_t)b * p.J * 12,
                  p.joints + (int64_t)b * p.J * 3);
}

template <bool kHalf>
__global__ void vertex_kernel(LbsParams p, const float* pose_feat, const float* transforms) {
  extern __shared__ float smem[];
  const int b = blockIdx.y;
  const int P = (p.J - 1) * 9;
  float* A = smem;              // J x 12
  float* pf = smem + p.J * 12;  // P
  for (int i = threadIdx.x; i < p.J * 12; i += blockDim.x) A[i] = transforms[(int64_t)b * p.J * 12 + i];
  for (int i = threadIdx.x; i < P; i += blockDim.x) pf[i] = pose_feat[(int64_t)b * P + i];
  __syncthreads();
  const int v = blockIdx.x * blockDim.x + threadIdx.x;
  if (v >= p.V) return;
  const int64_t V3 = (int64_t)p.V * 3;
  const float* beta = p.betas + (int64_t)b * p.NB;
  float x[3];
  for (int d = 0; d < 3; ++d) {
    float s = p.v_template[3 * v + d];
    const float* sd = p.shapedirs + ((int64_t)v * 3 + d) * p.NB;
    for (int n = 0; n < p.NB; ++n) s += sd[n] * beta[n];
    x[d] = s;
  }
  for (int k = 0; k < P; ++k) {
    const float f = pf[k];
    const int64_t o = (int64_t)k * V3 + 3 * v;
    if (kHalf) {
      const __half* pd = static_cast<const __half*>(p.posedirs);
      x[0] += f * __half2float(pd[o]);
      x[1] += f * __half2float(pd[o + 1]);
      x[2] += f * __half2float(pd[o + 2]);
    } else {
      const float* pd = static_cast<const float*>(p.posedirs);
      x[0] += f * pd[o];
      x[1] += f * pd[o + 1];
      x[2] += f * pd[o + 2];
    }
  }
  skin_vertex(A, p.weights + (int64_t)v * p.J, p.J, x, p.vertices + (int64_t)b * V3 + 3 * v);
}

}  // namespace

int64_t lbs_workspace_floats(int B, int J, int NB) {
  const int P = (J - 1) * 9;
  return (int64_t)J * 3 * (NB + 1) + (int64_t)B * P + (int64_t)B * J * 12;
}

std::string lbs(const LbsParams& p, float* workspace, uintptr_t stream) {
  if (p.B == 0) return {};
  cudaStream_t s = (cudaStream_t)stream;
  const int P = (p.J - 1) * 9;
  float* basis = workspace;
  float* pose_feat = basis + (int64_t)p.J * 3 * (p.NB + 1);
  float* transforms = pose_feat + (int64_t)p.B * P;
  joint_basis_kernel<<<p.J * 3 * (p.NB + 1), kBasisThreads, 0, s>>>(p, basis);
  sample_kernel<<<(p.B + 63) / 64, 64, 0, s>>>(p, basis, pose_feat, transforms);
  const dim3 grid((p.V + kVertexThreads - 1) / kVertexThreads, p.B);
  const size_t shmem = sizeof(float) * (p.J * 12 + P);
  if (p.posedirs_fp16)
    vertex_kernel<true><<<grid, kVertexThreads, shmem, s>>>(p, pose_feat, transforms);
  else
    vertex_kernel<false><<<grid, kVertexThreads, shmem, s>>>(p, pose_feat, transforms);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

}  // namespace cuda
}  // namespace hmr
