// Body-centre peaks of a heatmap (max-pool NMS + top-K), shared by the CPU and CUDA builds.
//
// A pixel is a peak when its value is >= threshold and it is the maximum of its window x window
// neighbourhood (clipped at the borders); among equal maxima in a window the pixel with the
// smallest flat index wins, so a plateau yields one peak rather than all of its pixels. NaN
// values are never peaks and never suppress a neighbour. Peaks are ranked by score descending,
// then flat index ascending: both orders are one unsigned 64-bit key, largest first.
#pragma once

#include <cstdint>
#include <cstring>

#include "hd.h"

namespace hmr {

struct CentreParams {
  int B, H, W;          // images, heatmap height and width
  int radius;           // window = 2 * radius + 1
  int max_peaks;        // K
  float threshold;      // finite
  const float* heatmap; // B x H x W
  int32_t* count;       // B: peaks returned (<= K)
  float* scores;        // B x K, 0 in unused slots
  float* xy;            // B x K x 2 (column, row), -1 in unused slots
  int32_t* index;       // B x K flat index row * W + column, -1 in unused slots
};

// True when pixel (y, x) of `img` (H x W) is a peak (see the file comment).
HMR_HD bool is_centre_peak(const float* img, int H, int W, int y, int x, int radius,
                           float threshold) {
  const float v = img[(int64_t)y * W + x];
  if (!(v >= threshold)) return false;  // below threshold, or NaN
  const int y0 = y - radius < 0 ? 0 : y - radius, y1 = y + radius >= H ? H - 1 : y + radius;
  const int x0 = x - radius < 0 ? 0 : x - radius, x1 = x + radius >= W ? W - 1 : x + radius;
  for (int yy = y0; yy <= y1; ++yy) {
    const float* row = img + (int64_t)yy * W;
    for (int xx = x0; xx <= x1; ++xx) {
      const float q = row[xx];
      const bool before = yy < y || (yy == y && xx < x);  // smaller flat index
      if (q > v || (before && q == v)) return false;
    }
  }
  return true;
}

// Ranking key: larger key = higher score, then smaller flat index. -0 counts as +0 so that
// equal scores always fall back to the index. Never 0 for a finite-threshold peak.
HMR_HD uint64_t centre_peak_key(float score, int32_t flat_index) {
  if (score == 0.0f) score = 0.0f;
  uint32_t bits;
  memcpy(&bits, &score, sizeof bits);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);  // order-preserving
  return ((uint64_t)bits << 32) | (uint64_t)(0xFFFFFFFFu - (uint32_t)flat_index);
}

HMR_HD int32_t centre_key_index(uint64_t key) {
  return (int32_t)(0xFFFFFFFFu - (uint32_t)(key & 0xFFFFFFFFu));
}

// Writes slot k of image b: the peak at `flat_index`, or an unused slot when flat_index < 0.
HMR_HD void write_centre_slot(const CentreParams& p, int b, int k, int32_t flat_index) {
  const int64_t s = (int64_t)b * p.max_peaks + k;
  if (flat_index < 0) {
    p.scores[s] = 0.0f;
    p.index[s] = -1;
    p.xy[2 * s] = -1.0f;
    p.xy[2 * s + 1] = -1.0f;
    return;
  }
  p.scores[s] = p.heatmap[(int64_t)b * p.H * p.W + flat_index];
  p.index[s] = flat_index;
  p.xy[2 * s] = (float)(flat_index % p.W);
  p.xy[2 * s + 1] = (float)(flat_index / p.W);
}

}  // namespace hmr
