// Batched LBS on the CPU (smplx.lbs semantics, fp32, optional fp16 posedirs).
//
// Work plan: (1) per sample, in parallel: shaped vertices, rest joints, pose feature and the
// rigid transform chain; (2) per tile of 32 vertices, in parallel: pose blend shapes as a small
// register-blocked GEMM over the 207 pose features (the dominant cost), then skinning of the
// tile while it is still in cache. The tile of posedirs is read once per block of 4 samples.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define HMR_LBS_AVX2 1
#endif

#include "ops.h"

namespace hmr {
namespace cpu {
namespace {

constexpr int kTileVerts = 32;
constexpr int kTileCols = kTileVerts * 3;  // 96
constexpr int kGroupCols = 24;             // 3 AVX vectors
constexpr int kBatchBlock = 4;

// acc[nb][cols] += sum_p pf[b][p] * rows[p][cols] for one group of kGroupCols columns.
// pf: nb rows of stride P; rows: P rows of stride ld.
template <int NB>
inline void pose_blend_group(const float* const* pf, int P, const float* rows, int64_t ld,
                             float* const* acc) {
#if HMR_LBS_AVX2
  __m256 a[NB][3];
  for (int b = 0; b < NB; ++b)
    for (int v = 0; v < 3; ++v) a[b][v] = _mm256_loadu_ps(acc[b] + 8 * v);
  for (int p = 0; p < P; ++p) {
    const float* r = rows + (int64_t)p * ld;
    const __m256 r0 = _mm256_loadu_ps(r), r1 = _mm256_loadu_ps(r + 8), r2 = _mm256_loadu_ps(r + 16);
    for (int b = 0; b < NB; ++b) {
      const __m256 s = _mm256_broadcast_ss(pf[b] + p);
      a[b][0] = _mm256_fmadd_ps(s, r0, a[b][0]);
      a[b][1] = _mm256_fmadd_ps(s, r1, a[b][1]);
      a[b][2] = _mm256_fmadd_ps(s, r2, a[b][2]);
    }
  }
  for (int b = 0; b < NB; ++b)
    for (int v = 0; v < 3; ++v) _mm256_storeu_ps(acc[b] + 8 * v, a[b][v]);
#else
  for (int b = 0; b < NB; ++b)
    for (int p = 0; p < P; ++p) {
      const float s = pf[b][p];
      const float* r = rows + (int64_t)p * ld;
      for (int c = 0; c < kGroupCols; ++c) acc[b][c] += s * r[c];
    }
#endif
}

template <int NB>
inline void pose_blend_tail(const float* const* pf, int P, const float* rows, int64_t ld,
                            int ncols, float* const* acc) {
  for (int b = 0; b < NB; ++b)
    for (int p = 0; p < P; ++p) {
      const float s = pf[b][p];
      const float* r = rows + (int64_t)p * ld;
      for (int c = 0; c < ncols; ++c) acc[b][c] += s * r[c];
    }
}

// Pose-blend one tile for a block of nb samples: acc[b] = v_shaped[b][tile] + PD^T pf[b].
template <int NB>
void pose_blend_tile(const float* const* pf, int P, const float* rows, int64_t ld, int ncols,
                     float* const* acc) {
  int c = 0;
  for (; c + kGroupCols <= ncols; c += kGroupCols) {
    float* a[NB];
    for (int b = 0; b < NB; ++b) a[b] = acc[b] + c;
    pose_blend_group<NB>(pf, P, rows + c, ld, a);
  }
  if (c < ncols) {
    float* a[NB];
    for (int b = 0; b < NB; ++b) a[b] = acc[b] + c;
    pose_blend_tail<NB>(pf, P, rows + c, ld, ncols - c, a);
  }
}

void pose_blend_dispatch(int nb, const float* const* pf, int P, const float* rows, int64_t ld,
                         int ncols, float* const* acc) {
  switch (nb) {
    case 4: pose_blend_tile<4>(pf, P, rows, ld, ncols, acc); break;
    case 3: pose_blend_tile<3>(pf, P, rows, ld, ncols, acc); break;
    case 2: pose_blend_tile<2>(pf, P, rows, ld, ncols, acc); break;
    default: pose_blend_tile<1>(pf, P, rows, ld, ncols, acc); break;
  }
}

// Converts a tile of half-precision posedirs into fp32 rows of stride kTileCols.
void convert_half_tile(const uint16_t* src, int64_t ld, int P, int ncols, float* dst) {
  for (int p = 0; p < P; ++p) {
    const uint16_t* s = src + (int64_t)p * ld;
    float* d = dst + (int64_t)p * kTileCols;
    int c = 0;
#if defined(__F16C__)
    for (; c + 8 <= ncols; c += 8)
      _mm256_storeu_ps(d + c, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(s + c))));
#endif
    for (; c < ncols; ++c) d[c] = half_bits_to_float(s[c]);
  }
}


// Streaming pose blend for small batches (GEMV-like, memory bound): every row of posedirs is
// read once, front to back, over the caller's column range, which keeps the hardware
// prefetcher busy; acc[b] (ncols floats each) stays in L2.
void blend_rows_streaming(int nb, const float* const* feat, int P, const void* rows, bool half,
                          int64_t ld, int64_t c0, int64_t ncols, float* const* acc) {
  constexpr int64_t kChunk = 2048;
  float buf[kChunk];
  for (int p = 0; p < P; ++p) {
    for (int64_t s = 0; s < ncols; s += kChunk) {
      const int64_t n = std::min(kChunk, ncols - s);
      const float* r;
      if (half) {
        convert_half_tile(static_cast<const uint16_t*>(rows) + (int64_t)p * ld + c0 + s, 0, 1,
                          (int)n, buf);
        r = buf;
      } else {
        r = static_cast<const float*>(rows) + (int64_t)p * ld + c0 + s;
      }
      for (int b = 0; b < nb; ++b) {
        const float f = feat[b][p];
        if (f == 0.0f) continue;  // rest-pose joints contribute nothing
        float* a = acc[b] + s;
        for (int64_t c = 0; c < n; ++c) a[c] += f * r[c];
      }
    }
  }
}

}  // namespace

// Nonzero entries of a row-major (rows x cols) matrix, row by row (CSR without the values'
// copy of zeros). SMPL's J_regressor and skinning weights are sparse; dense models still work.
struct Sparse {
  std::vector<int32_t> start, index;
  std::vector<float> value;
  Sparse(const float* m, int rows, int cols) : start(rows + 1, 0) {
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < cols; ++c) {
        const float x = m[(int64_t)r * cols + c];
        if (x != 0.0f) { index.push_back(c); value.push_back(x); }
      }
      start[r + 1] = (int32_t)index.size();
    }
  }
};

void lbs(const LbsParams& p) {
  const int B = p.B, V = p.V, J = p.J, NB = p.NB;
  const int P = (J - 1) * 9;
  const int64_t V3 = (int64_t)V * 3;
  if (B == 0) return;
  const Sparse jreg(p.j_regressor, J, V), skin(p.weights, V, J);

  // 1. Shape directions as NB rows of V*3, so shape blending runs through the same GEMM
  //    micro-kernel as pose blending; betas become NB extra "features".
  std::vector<float> shape_rows((size_t)NB * V3);
  for (int64_t k = 0; k < V3; ++k)
    for (int n = 0; n < NB; ++n) shape_rows[(size_t)n * V3 + k] = p.shapedirs[k * NB + n];

  // 2. Rest joints are affine in betas: J_rest = Jreg @ v_template + (Jreg @ shapedirs) @ betas.
  //    The basis costs nnz(Jreg)*3*(NB+1) once; regressing each sample directly costs
  //    nnz(Jreg)*3*(NB+1) per sample too (its shaped vertices), so the basis wins for B > 1.
  std::vector<float> basis((size_t)J * 3 * (NB + 1), 0.0f);  // (j, d) x (1 + NB)
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

  // 3. Per sample: pose feature and rigid transforms.
  std::vector<float> pose_feat((size_t)B * P), transforms((size_t)B * J * 12);
#pragma omp parallel for schedule(static) if (B > 8)
  for (int b = 0; b < B; ++b) {
    const float* beta = p.betas + (int64_t)b * NB;
    float j_rest[kMaxJoints * 3];
    for (int jd = 0; jd < J * 3; ++jd) {
      const float* row = basis.data() + (size_t)jd * (NB + 1);
      float s = row[0];
      for (int n = 0; n < NB; ++n) s += row[n + 1] * beta[n];
      j_rest[jd] = s;
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
    const float* A = transforms_ptr + (int64_t)b * J * 12;
    float* out = p.vertices + b * V3 + (int64_t)v0 * 3;
    for (int v = 0; v < nv; ++v) {
      float T[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
      for (int e = skin.start[v0 + v]; e < skin.start[v0 + v + 1]; ++e) {
        const float wj = skin.value[e];
        const float* Aj = A + 12 * skin.index[e];
        for (int k = 0; k < 12; ++k) T[k] += wj * Aj[k];
      }
      const float* x = x_tile + 3 * v;
      for (int r = 0; r < 3; ++r)
        out[3 * v + r] = T[4 * r] * x[0] + T[4 * r + 1] * x[1] + T[4 * r + 2] * x[2] + T[4 * r + 3];
    }
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
      blend_rows_streaming(B, beta, NB, shape_rows.data(), false, V3, c0, ncols, a);
      blend_rows_streaming(B, pf, P, p.posedirs, p.posedirs_fp16, V3, c0, ncols, a);
      for (int b = 0; b < B; ++b) skin_range(b, v0, v1 - v0, a[b]);
    }
    return;
  }

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
        pose_blend_dispatch(nb, beta, NB, shape_rows.data() + c0, V3, ncols, a);
        pose_blend_dispatch(nb, pf, P, rows, ld, ncols, a);
        for (int i = 0; i < nb; ++i) skin_range(b0 + i, v0, nv, acc[i]);
      }
    }
  }
}

}  // namespace cpu
}  // namespace hmr
