// Building blocks of the CPU LBS drivers (lbs.cpp: one-shot on raw arrays; lbs_model.cpp:
// prepared model data): a register-blocked blend-shape GEMM micro-kernel, fp16 row conversion,
// and CSR storage for sparse J_regressor and skinning weights.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define HMR_LBS_AVX2 1
#endif

#include "../common/lbs.h"

namespace hmr {
namespace cpu {
namespace blend {

constexpr int kTileVerts = 32;
constexpr int kTileCols = kTileVerts * 3;  // 96
constexpr int kGroupCols = 24;             // 3 AVX vectors
constexpr int kBatchBlock = 4;

// acc[nb][cols] += sum_p pf[b][p] * rows[p][cols] for one group of kGroupCols columns.
// pf: nb rows of stride P; rows: P rows of stride ld.
template <int NB>
inline void pose_blend_group(const float* const* pf, const int32_t* idx, int P, const float* rows,
                             int64_t ld, float* const* acc) {
#if HMR_LBS_AVX2
  __m256 a[NB][3];
  for (int b = 0; b < NB; ++b)
    for (int v = 0; v < 3; ++v) a[b][v] = _mm256_loadu_ps(acc[b] + 8 * v);
  for (int p = 0; p < P; ++p) {
    const float* r = rows + (int64_t)p * ld;
    const __m256 r0 = _mm256_loadu_ps(r), r1 = _mm256_loadu_ps(r + 8), r2 = _mm256_loadu_ps(r + 16);
    const int f = idx ? idx[p] : p;
    for (int b = 0; b < NB; ++b) {
      const __m256 s = _mm256_broadcast_ss(pf[b] + f);
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
      const float s = pf[b][idx ? idx[p] : p];
      const float* r = rows + (int64_t)p * ld;
      for (int c = 0; c < kGroupCols; ++c) acc[b][c] += s * r[c];
    }
#endif
}

template <int NB>
inline void pose_blend_tail(const float* const* pf, const int32_t* idx, int P, const float* rows,
                            int64_t ld, int ncols, float* const* acc) {
  for (int b = 0; b < NB; ++b)
    for (int p = 0; p < P; ++p) {
      const float s = pf[b][idx ? idx[p] : p];
      const float* r = rows + (int64_t)p * ld;
      for (int c = 0; c < ncols; ++c) acc[b][c] += s * r[c];
    }
}

// Pose-blend one tile for a block of nb samples: acc[b] = v_shaped[b][tile] + PD^T pf[b].
template <int NB>
inline void pose_blend_tile(const float* const* pf, const int32_t* idx, int P, const float* rows,
                            int64_t ld, int ncols, float* const* acc) {
  int c = 0;
  for (; c + kGroupCols <= ncols; c += kGroupCols) {
    float* a[NB];
    for (int b = 0; b < NB; ++b) a[b] = acc[b] + c;
    pose_blend_group<NB>(pf, idx, P, rows + c, ld, a);
  }
  if (c < ncols) {
    float* a[NB];
    for (int b = 0; b < NB; ++b) a[b] = acc[b] + c;
    pose_blend_tail<NB>(pf, idx, P, rows + c, ld, ncols - c, a);
  }
}

// rows: P rows of stride ld; row p scales by feature idx[p] (or p when idx is null) of each
// sample's feature vector pf[b].
inline void pose_blend_dispatch(int nb, const float* const* pf, const int32_t* idx, int P,
                                const float* rows, int64_t ld, int ncols, float* const* acc) {
  switch (nb) {
    case 4: pose_blend_tile<4>(pf, idx, P, rows, ld, ncols, acc); break;
    case 3: pose_blend_tile<3>(pf, idx, P, rows, ld, ncols, acc); break;
    case 2: pose_blend_tile<2>(pf, idx, P, rows, ld, ncols, acc); break;
    default: pose_blend_tile<1>(pf, idx, P, rows, ld, ncols, acc); break;
  }
}

// Converts a tile of half-precision posedirs into fp32 rows of stride kTileCols.
inline void convert_half_tile(const uint16_t* src, int64_t ld, int P, int ncols, float* dst) {
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
inline void blend_rows_streaming(int nb, const float* const* feat, int P, const void* rows, bool half,
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


// Nonzero entries of a row-major (rows x cols) matrix, row by row (CSR without the values'
// copy of zeros). SMPL's J_regressor and skinning weights are sparse; dense models still work.
struct Sparse {
  std::vector<int32_t> start, index;
  std::vector<float> value;
  Sparse(const float* m, int rows, int cols) : start(rows + 1, 0) {
    int64_t nnz = 0;  // two passes: exact allocation, no regrowth on dense inputs
    for (int64_t i = 0; i < (int64_t)rows * cols; ++i) nnz += m[i] != 0.0f;
    index.resize(nnz);
    value.resize(nnz);
    int32_t k = 0;
    for (int r = 0; r < rows; ++r) {
      const float* row = m + (int64_t)r * cols;
      for (int c = 0; c < cols; ++c)
        if (row[c] != 0.0f) { index[k] = c; value[k] = row[c]; ++k; }
      start[r + 1] = k;
    }
  }
};


// Skin vertices [v0, v0+nv) of one sample: T = sum_j w_j A_j over the CSR weights, x' = T [x; 1].
// With AVX2 the 12 entries of T are one 8-wide and one 4-wide register, so a weight costs two
// FMAs instead of twelve.
inline void skin_csr(const Sparse& skin, const float* A, int v0, int nv, const float* x_tile,
                     float* out) {
  const int32_t* start = skin.start.data();
  const int32_t* index = skin.index.data();
  const float* value = skin.value.data();
  for (int v = 0; v < nv; ++v) {
    const float* x = x_tile + 3 * v;
#if HMR_LBS_AVX2
    __m256 t01 = _mm256_setzero_ps();
    __m128 t2 = _mm_setzero_ps();
    for (int e = start[v0 + v]; e < start[v0 + v + 1]; ++e) {
      const float* Aj = A + 12 * index[e];
      t01 = _mm256_fmadd_ps(_mm256_set1_ps(value[e]), _mm256_loadu_ps(Aj), t01);
      t2 = _mm_fmadd_ps(_mm_set1_ps(value[e]), _mm_loadu_ps(Aj + 8), t2);
    }
    const __m128 h = _mm_setr_ps(x[0], x[1], x[2], 1.0f);
    const __m128 r0 = _mm_mul_ps(_mm256_castps256_ps128(t01), h);
    const __m128 r1 = _mm_mul_ps(_mm256_extractf128_ps(t01, 1), h);
    const __m128 r2 = _mm_mul_ps(t2, h);
    // Horizontal sums of r0, r1, r2 -> lanes 0, 1, 2.
    const __m128 s01 = _mm_hadd_ps(r0, r1);    // r0a r0b r1a r1b
    const __m128 s2 = _mm_hadd_ps(r2, r2);     // r2a r2b r2a r2b
    const __m128 s = _mm_hadd_ps(s01, s2);     // R0 R1 R2 R2
    float o[4];
    _mm_storeu_ps(o, s);
    out[3 * v] = o[0]; out[3 * v + 1] = o[1]; out[3 * v + 2] = o[2];
#else
    float T[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (int e = start[v0 + v]; e < start[v0 + v + 1]; ++e) {
      const float wj = value[e];
      const float* Aj = A + 12 * index[e];
      for (int k = 0; k < 12; ++k) T[k] += wj * Aj[k];
    }
    for (int r = 0; r < 3; ++r)
      out[3 * v + r] = T[4 * r] * x[0] + T[4 * r + 1] * x[1] + T[4 * r + 2] * x[2] + T[4 * r + 3];
#endif
  }
}

}  // namespace blend
}  // namespace cpu
}  // namespace hmr
