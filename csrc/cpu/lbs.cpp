// Batched LBS on the CPU (smplx.lbs semantics, fp32, optional fp16 posedirs).
//
// Work plan: (1) per sample, in parallel: shaped vertices, rest joints, pose feature and the
// rigid transform chain; (2) per tile of 32 vertices, in parallel: pose blend shapes as a small
// register-blocked GEMM over the 207 pose features (the dominant cost), then skinning of the
// tile while it is still in cache. The tile of posedirs is read once per block of 4 samples.
#include <omp.h>

#include "blend.h"
#include "ops.h"

namespace hmr {
namespace cpu {

using namespace blend;

void lbs(const LbsParams& p) {
  const int B = p.B, V = p.V, J = p.J, NB = p.NB;
  const int P = (J - 1) * 9;
  const int64_t V3 = (int64_t)V * 3;
  if (B == 0) return;
  const Sparse jreg(p.j_regressor, J, V), skin(p.weights, V, J);

  // 1. Rest joints. Either through a basis, since they are affine in betas
  //    (J_rest = Jreg @ v_template + (Jreg @ shapedirs) @ betas, costing nnz(Jreg)*3*(NB+1)
  //    once), or per sample from its shaped vertices (V*3*NB + nnz(Jreg)*3 each): a sparse
  //    regressor (SMPL's) favours the basis, a dense one at small batch the direct way.
  const int64_t nnz = (int64_t)jreg.index.size();
  const bool use_basis = nnz * 3 * (NB + 1) + (int64_t)B * J * 3 * NB <
                         (int64_t)B * (V3 * NB + nnz * 3);
  std::vector<float> basis(use_basis ? (size_t)J * 3 * (NB + 1) : 0, 0.0f);  // (j,d) x (1+NB)
  if (use_basis) {
#pragma omp parallel for schedule(static)
    for (int j = 0; j < J; ++j)
      for (int e = jreg.start[j]; e < jreg.start[j + 1]; ++e) {
        const int v = jreg.index[e];
        const float w = jreg.value[e];
        for (int d = 0; d < 3; ++d) {
          float* row = basis.data() + ((size_t)j * 3 + d) * (NB + 1);
          row[0] += w * p.v_template[3 * v + d];
          const float* sd = p.shapedirs + ((int64_t)v * 3 + d) * NB;
          for (int n = 0; n < NB; ++n) row[n + 1] += w * sd[n];
        }
      }
  }

  // 2. Per sample: rest joints, pose feature and rigid transforms.
  std::vector<float> pose_feat((size_t)B * P), transforms((size_t)B * J * 12);
#pragma omp parallel for schedule(static) if (B > 8)
  for (int b = 0; b < B; ++b) {
    const float* beta = p.betas + (int64_t)b * NB;
    float j_rest[kMaxJoints * 3];
    if (use_basis) {
      for (int jd = 0; jd < J * 3; ++jd) {
        const float* row = basis.data() + (size_t)jd * (NB + 1);
        float s = row[0];
        for (int n = 0; n < NB; ++n) s += row[n + 1] * beta[n];
        j_rest[jd] = s;
      }
    } else {
      std::vector<float> v_shaped(V3);
      for (int64_t k = 0; k < V3; ++k) {
        float s = p.v_template[k];
        const float* sd = p.shapedirs + k * NB;
        for (int n = 0; n < NB; ++n) s += sd[n] * beta[n];
        v_shaped[k] = s;
      }
      for (int j = 0; j < J; ++j) {
        float x = 0.f, y = 0.f, z = 0.f;
        for (int e = jreg.start[j]; e < jreg.start[j + 1]; ++e) {
          const float* vs = v_shaped.data() + 3 * (int64_t)jreg.index[e];
          const float w = jreg.value[e];
          x += w * vs[0]; y += w * vs[1]; z += w * vs[2];
        }
        j_rest[3 * j] = x; j_rest[3 * j + 1] = y; j_rest[3 * j + 2] = z;
      }
    }
    const float* R = p.rotmats + (int64_t)b * J * 9;
    pose_feature_one(R, J, pose_feat.data() + (int64_t)b * P);
    rigid_chain_one(R, j_rest, p.parents, J, transforms.data() + (int64_t)b * J * 12,
                    p.joints + (int64_t)b * J * 3);
  }

  // 4. Blend shapes, then sparse skinning. Small batches stream posedirs once (memory bound);
  //    larger ones run a register-blocked GEMM per tile of vertices (compute bound).
  const float* const transforms_ptr = transforms.data();
  auto skin_range = [&](int b, int v0, int nv, const float* x_tile) {
    skin_csr(skin, transforms_ptr + (int64_t)b * J * 12, v0, nv, x_tile,
             p.vertices + b * V3 + (int64_t)v0 * 3);
  };

  if (B <= kBatchBlock) {
#pragma omp parallel
    {
      const int nt = omp_get_num_threads(), id = omp_get_thread_num();
      const int v0 = (int)((int64_t)V * id / nt), v1 = (int)((int64_t)V * (id + 1) / nt);
      const int64_t c0 = (int64_t)v0 * 3, ncols = (int64_t)(v1 - v0) * 3;
      std::vector<float> buf((size_t)B * ncols);
      const float* pf[kBatchBlock];
      const float* beta[kBatchBlock];
      float* a[kBatchBlock];
      for (int b = 0; b < B; ++b) {
        pf[b] = pose_feat.data() + (int64_t)b * P;
        beta[b] = p.betas + (int64_t)b * NB;
        a[b] = buf.data() + (size_t)b * ncols;
        std::memcpy(a[b], p.v_template + c0, sizeof(float) * ncols);
      }
      for (int b = 0; b < B; ++b)  // shape blend shapes straight from the (V, 3, NB) layout
        for (int64_t c = 0; c < ncols; ++c) {
          const float* sd = p.shapedirs + (c0 + c) * NB;
          float s = 0.f;
          for (int n = 0; n < NB; ++n) s += sd[n] * beta[b][n];
          a[b][c] += s;
        }
      blend_rows_streaming(B, pf, P, p.posedirs, p.posedirs_fp16, V3, c0, ncols, a);
      for (int b = 0; b < B; ++b) skin_range(b, v0, v1 - v0, a[b]);
    }
    return;
  }

  // Shape directions as NB rows of V*3, so shape blending runs through the GEMM micro-kernel
  // with the betas as NB extra features.
  std::vector<float> shape_rows((size_t)NB * V3);
  for (int64_t k = 0; k < V3; ++k)
    for (int n = 0; n < NB; ++n) shape_rows[(size_t)n * V3 + k] = p.shapedirs[k * NB + n];
  const int num_tiles = (V + kTileVerts - 1) / kTileVerts;
#pragma omp parallel
  {
    std::vector<float> half_rows(p.posedirs_fp16 ? (size_t)P * kTileCols : 0);
    float acc[kBatchBlock][kTileCols];
#pragma omp for schedule(static)
    for (int t = 0; t < num_tiles; ++t) {
      const int v0 = t * kTileVerts;
      const int nv = std::min(kTileVerts, V - v0);
      const int ncols = nv * 3;
      const int64_t c0 = (int64_t)v0 * 3;
      const float* rows;
      int64_t ld;
      if (p.posedirs_fp16) {
        convert_half_tile(static_cast<const uint16_t*>(p.posedirs) + c0, V3, P, ncols,
                          half_rows.data());
        rows = half_rows.data();
        ld = kTileCols;
      } else {
        rows = static_cast<const float*>(p.posedirs) + c0;
        ld = V3;
      }
      for (int b0 = 0; b0 < B; b0 += kBatchBlock) {
        const int nb = std::min(kBatchBlock, B - b0);
        const float* pf[kBatchBlock];
        const float* beta[kBatchBlock];
        float* a[kBatchBlock];
        for (int i = 0; i < nb; ++i) {
          pf[i] = pose_feat.data() + (int64_t)(b0 + i) * P;
          beta[i] = p.betas + (int64_t)(b0 + i) * NB;
          a[i] = acc[i];
          std::memcpy(acc[i], p.v_template + c0, sizeof(float) * ncols);
        }
        pose_blend_dispatch(nb, beta, nullptr, NB, shape_rows.data() + c0, V3, ncols, a);
        pose_blend_dispatch(nb, pf, nullptr, P, rows, ld, ncols, a);
        for (int i = 0; i < nb; ++i) skin_range(b0 + i, v0, nv, acc[i]);
      }
    }
  }
}

}  // namespace cpu
}  // namespace hmr
