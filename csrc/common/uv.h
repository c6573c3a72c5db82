// IUV feature warping and part visibility (paper 000, eq. 1) shared by the CPU and CUDA builds.
#pragma once

#include <cmath>

#include "hd.h"

namespace hmr {

struct IuvWarpParams {
  int B, C, H, W;        // features B x C x H x W, iuv B x 3 x H x W
  int S;                 // atlas size: output B x (C+3) x S x S
  float fg_threshold;    // pixels with I > fg_threshold splat
  const float* features;
  const float* iuv;
  float* out;            // B x (C+3) x S x S, zero-initialised by the driver
};

struct PartVisibilityParams {
  int B, S, num_parts;
  const float* occupancy;  // B x S x S
  const int32_t* part_map; // S x S, part id per texel, -1 where empty
  float* out;              // B x num_parts
};

// Texel index (row * S + col) of one pixel, or -1 when it does not splat. U and V are clamped
// to [0, 1]; NaN in I, U or V means background. Rounding is floor(x + 0.5) (DESIGN.md §4).
HMR_HD int iuv_texel(float i, float u, float v, float fg_threshold, int S) {
  if (!(i > fg_threshold) || u != u || v != v) return -1;
  u = u < 0.0f ? 0.0f : (u > 1.0f ? 1.0f : u);
  v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
  const int col = (int)floorf(u * (float)(S - 1) + 0.5f);
  const int row = (int)floorf(v * (float)(S - 1) + 0.5f);
  return row * S + col;
}

// Normalised pixel coordinate in [-1, 1]; a single row/column maps to 0.
HMR_HD float normalised_coord(int x, int n) {
  return n > 1 ? 2.0f * (float)x / (float)(n - 1) - 1.0f : 0.0f;
}

// Eq. 1: ω = min(1, 2 covered / total); parts without texels get 0.
HMR_HD float visibility_from_counts(int covered, int total) {
  if (total <= 0) return 0.0f;
  const float w = 2.0f * (float)covered / (float)total;
  return w < 1.0f ? w : 1.0f;
}

}  // namespace hmr
