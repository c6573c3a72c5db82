// Prepared-model LBS on the CPU; see lbs_model.h for the plan.
#include "lbs_model.h"

#include <omp.h>

namespace hmr {
namespace cpu {

using namespace blend;

namespace {

// Appends the nonzero rows of one tile: row f holds value(f, c) for the tile's columns c.
template <typename T, typename Value>
void pack_tile(int F, int feature_offset, int ncols, Value value, std::vector<T>& rows,
               std::vector<int32_t>& feature) {
  for (int f = 0; f < F; ++f) {
    bool any = false;
    for (int c = 0; c < ncols && !any; ++c) any = value(f, c) != T(0);
    if (!any) continue;
    const size_t at = rows.size();
    rows.resize(at + kTileCols, T(0));
    for (int c = 0; c < ncols; ++c) rows[at + c] = value(f, c);
    feature.push_back(feature_offset + f);
  }
}

}  // namespace

LbsModel::LbsModel(int V, int J, int NB, const float* v_template, const float* shapedirs,
                   const void* posedirs, bool posedirs_fp16, const float* j_regressor,
                   const int64_t* parents, const float* weights)
    : V_(V), J_(J), NB_(NB), P_((J - 1) * 9), num_tiles_((V + kTileVerts - 1) / kTileVerts),
      fp16_(posedirs_fp16), v_template_(v_template, v_template + (int64_t)V * 3),
      basis_((size_t)J * 3 * (NB + 1), 0.0f), parents_(parents, parents + J),
      skin_(weights, V, J) {
  const int64_t V3 = (int64_t)V * 3;
  // Joint basis from the sparse regressor.
  const Sparse jreg(j_regressor, J, V);
  for (int j = 0; j < J; ++j)
    for (int e = jreg.start[j]; e < jreg.start[j + 1]; ++e) {
      const int v = jreg.index[e];
      const float w = jreg.value[e];
      for (int d = 0; d < 3; ++d) {
        float* row = basis_.data() + ((size_t)j * 3 + d) * (NB + 1);
        row[0] += w * v_template[3 * v + d];
        const float* sd = shapedirs + ((int64_t)v * 3 + d) * NB;
        for (int n = 0; n < NB; ++n) row[n + 1] += w * sd[n];
      }
    }
  // Tile-major blend shapes without all-zero rows.
  shape_start_.push_back(0);
  pose_start_.push_back(0);
  for (int t = 0; t < num_tiles_; ++t) {
    const int64_t c0 = (int64_t)t * kTileCols;
    const int ncols = (int)std::min<int64_t>(kTileCols, V3 - c0);
    pack_tile<float>(NB, 0, ncols, [&](int f, int c) { return shapedirs[(c0 + c) * NB + f]; },
                     shape_rows_, shape_feature_);
    if (fp16_) {
      const uint16_t* pd = static_cast<const uint16_t*>(posedirs);
      // +0 and -0 are both "zero" for dropping rows.
      pack_tile<uint16_t>(P_, NB, ncols,
                          [&](int f, int c) {
                            const uint16_t h = pd[(int64_t)f * V3 + c0 + c];
                            return (uint16_t)((h & 0x7fffu) ? h : 0u);
                          },
                          pose_rows16_, pose_feature_);
    } else {
      const float* pd = static_cast<const float*>(posedirs);
      pack_tile<float>(P_, NB, ncols, [&](int f, int c) { return pd[(int64_t)f * V3 + c0 + c]; },
                       pose_rows32_, pose_feature_);
    }
    shape_start_.push_back((int64_t)shape_feature_.size());
    pose_start_.push_back((int64_t)pose_feature_.size());
  }
}

void LbsModel::forward(int B, const float* betas, const float* rotmats, float* vertices,
                       float* joints) const {
  if (B == 0) return;
  const int J = J_, NB = NB_, P = P_, F = NB_ + P_;
  const int64_t V3 = (int64_t)V_ * 3;
  thread_local std::vector<float> feats, transforms;
  feats.resize((size_t)B * F);
  transforms.resize((size_t)B * J * 12);
  float* const feats_ptr = feats.data();
  float* const transforms_ptr = transforms.data();

  // 1. Per sample: feature vector [betas, pose feature], rest joints, rigid transforms.
#pragma omp parallel for schedule(static) if (B > 8)
  for (int b = 0; b < B; ++b) {
    const float* beta = betas + (int64_t)b * NB;
    float* f = feats_ptr + (int64_t)b * F;
    for (int n = 0; n < NB; ++n) f[n] = beta[n];
    const float* R = rotmats + (int64_t)b * J * 9;
    pose_feature_one(R, J, f + NB);
    float j_rest[kMaxJoints * 3];
    for (int jd = 0; jd < J * 3; ++jd) {
      const float* row = basis_.data() + (size_t)jd * (NB + 1);
      float s = row[0];
      for (int n = 0; n < NB; ++n) s += row[n + 1] * beta[n];
      j_rest[jd] = s;
    }
    rigid_chain_one(R, j_rest, parents_.data(), J, transforms_ptr + (int64_t)b * J * 12,
                    joints + (int64_t)b * J * 3);
  }

  // 2. Per tile: blend shapes (packed rows, GEMM micro-kernel), then skinning.
#pragma omp parallel
  {
    thread_local std::vector<float> half_rows;
    if (fp16_) half_rows.resize((size_t)P * kTileCols);
    float acc[kBatchBlock][kTileCols];
#pragma omp for schedule(static)
    for (int t = 0; t < num_tiles_; ++t) {
      const int v0 = t * kTileVerts;
      const int nv = std::min(kTileVerts, V_ - v0);
      const int ncols = nv * 3;
      const int64_t c0 = (int64_t)v0 * 3;
      const int64_t s0 = shape_start_[t], ns = shape_start_[t + 1] - s0;
      const int64_t p0 = pose_start_[t], np_ = pose_start_[t + 1] - p0;
      const float* pose_rows;
      if (fp16_) {
        convert_half_tile(pose_rows16_.data() + p0 * kTileCols, kTileCols, (int)np_, kTileCols,
                          half_rows.data());
        pose_rows = half_rows.data();
      } else {
        pose_rows = pose_rows32_.data() + p0 * kTileCols;
      }
      for (int b0 = 0; b0 < B; b0 += kBatchBlock) {
        const int nb = std::min(kBatchBlock, B - b0);
        const float* f[kBatchBlock];
        float* a[kBatchBlock];
        for (int i = 0; i < nb; ++i) {
          f[i] = feats_ptr + (int64_t)(b0 + i) * F;
          a[i] = acc[i];
          std::memcpy(acc[i], v_template_.data() + c0, sizeof(float) * ncols);
        }
        pose_blend_dispatch(nb, f, shape_feature_.data() + s0, (int)ns,
                            shape_rows_.data() + s0 * kTileCols, kTileCols, ncols, a);
        pose_blend_dispatch(nb, f, pose_feature_.data() + p0, (int)np_, pose_rows, kTileCols,
                            ncols, a);
        for (int i = 0; i < nb; ++i)
          skin_csr(skin_, transforms_ptr + (int64_t)(b0 + i) * J * 12, v0, nv, acc[i],
                   vertices + (b0 + i) * V3 + c0);
      }
    }
  }
}

}  // namespace cpu
}  // namespace hmr
