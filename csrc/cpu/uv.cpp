// IUV feature warping to the UV atlas and part visibility (eq. 1) on the CPU.
//
// iuv_warp first resolves each pixel to a texel once per image, then scatters channel by
// channel: every channel reads its feature plane contiguously and writes into one S x S plane,
// so the (B, C) loop parallelises without atomics.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "ops.h"

namespace hmr {
namespace cpu {

void iuv_warp(const IuvWarpParams& p) {
  const int64_t HW = (int64_t)p.H * p.W, SS = (int64_t)p.S * p.S;
  const int Co = p.C + 3;
  if (p.B == 0) return;
  std::vector<int32_t> texel((size_t)p.B * HW);
  std::vector<float> inv_count((size_t)p.B * SS);

  // 1. Texel of every pixel; coordinate means and occupancy.
#pragma omp parallel for schedule(static)
  for (int b = 0; b < p.B; ++b) {
    const float* I = p.iuv + (int64_t)b * 3 * HW;
    const float* U = I + HW;
    const float* Vc = U + HW;
    int32_t* tx = texel.data() + (int64_t)b * HW;
    float* out = p.out + (int64_t)b * Co * SS;
    float* xs = out + (int64_t)p.C * SS;
    float* ys = xs + SS;
    float* occ = ys + SS;  // holds counts until normalised
    for (int y = 0; y < p.H; ++y)
      for (int x = 0; x < p.W; ++x) {
        const int64_t i = (int64_t)y * p.W + x;
        const int t = iuv_texel(I[i], U[i], Vc[i], p.fg_threshold, p.S);
        tx[i] = t;
        if (t < 0) continue;
        xs[t] += normalised_coord(x, p.W);
        ys[t] += normalised_coord(y, p.H);
        occ[t] += 1.0f;
      }
    float* ic = inv_count.data() + (int64_t)b * SS;
    for (int64_t t = 0; t < SS; ++t) {
      const float n = occ[t];
      ic[t] = n > 0.f ? 1.0f / n : 0.f;
      xs[t] *= ic[t];
      ys[t] *= ic[t];
      occ[t] = n > 0.f ? 1.0f : 0.0f;
    }
  }

  // 2. Feature means, one (sample, channel) plane at a time.
  const int64_t planes = (int64_t)p.B * p.C;
#pragma omp parallel for schedule(static)
  for (int64_t bc = 0; bc < planes; ++bc) {
    const int64_t b = bc / p.C, c = bc % p.C;
    const float* f = p.features + bc * HW;
    const int32_t* tx = texel.data() + b * HW;
    float* o = p.out + (b * Co + c) * SS;
    for (int64_t i = 0; i < HW; ++i) {
      const int t = tx[i];
      if (t >= 0) o[t] += f[i];
    }
    const float* ic = inv_count.data() + b * SS;
    for (int64_t t = 0; t < SS; ++t) o[t] *= ic[t];
  }
}

void part_visibility(const PartVisibilityParams& p) {
  const int64_t SS = (int64_t)p.S * p.S;
  std::vector<int> total(p.num_parts, 0);
  for (int64_t t = 0; t < SS; ++t) {
    const int k = p.part_map[t];
    if (k >= 0 && k < p.num_parts) ++total[k];
  }
#pragma omp parallel for schedule(static) if (p.B > 8)
  for (int b = 0; b < p.B; ++b) {
    std::vector<int> covered(p.num_parts, 0);
    const float* occ = p.occupancy + (int64_t)b * SS;
    for (int64_t t = 0; t < SS; ++t) {
      const int k = p.part_map[t];
      if (k >= 0 && k < p.num_parts && occ[t] > 0.5f) ++covered[k];
    }
    for (int k = 0; k < p.num_parts; ++k)
      p.out[(int64_t)b * p.num_parts + k] = visibility_from_counts(covered[k], total[k]);
  }
}

}  // namespace cpu
}  // namespace hmr
