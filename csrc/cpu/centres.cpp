// Body-centre peaks on the CPU: one image per OpenMP iteration (see common/centres.h).
//
// A separable window maximum (rows, then columns; vectorisable, no data-dependent branches)
// finds the pixels that no neighbour exceeds; only those go through the exact peak test with
// its tie rule, so a dense map does not pay a mispredicted branch per neighbour.
#include <omp.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "../common/centres.h"
#include "ops.h"

namespace hmr {
namespace cpu {
namespace {

// rowmax[y][x] = max of img[y][x - r .. x + r] (clipped), NaN read as -inf.
void row_maxima(const float* img, int H, int W, int r, float* padded, float* rowmax) {
  const float lowest = -std::numeric_limits<float>::infinity();
  std::fill(padded, padded + W + 2 * r, lowest);
  for (int y = 0; y < H; ++y) {
    const float* row = img + (int64_t)y * W;
    for (int x = 0; x < W; ++x) padded[r + x] = row[x] == row[x] ? row[x] : lowest;
    float* out = rowmax + (int64_t)y * W;
    std::copy(padded, padded + W, out);
    for (int d = 1; d <= 2 * r; ++d)
      for (int x = 0; x < W; ++x) out[x] = padded[x + d] > out[x] ? padded[x + d] : out[x];
  }
}

}  // namespace

void centre_peaks(const CentreParams& p) {
  const int64_t plane = (int64_t)p.H * p.W;
  const int r = p.radius;
#pragma omp parallel for schedule(dynamic) if (p.B > 1)
  for (int b = 0; b < p.B; ++b) {
    const float* img = p.heatmap + b * plane;
    // scratch left uninitialised: every element is written before it is read
    std::unique_ptr<float[]> padded(new float[p.W + 2 * r]), rowmax(new float[plane]),
        window_max(new float[p.W]);
    std::unique_ptr<int[]> candidates(new int[p.W]);
    row_maxima(img, p.H, p.W, r, padded.get(), rowmax.get());
    std::vector<uint64_t> keys;
    for (int y = 0; y < p.H; ++y) {
      const int y0 = std::max(0, y - r), y1 = std::min(p.H - 1, y + r);
      std::copy(&rowmax[(int64_t)y0 * p.W], &rowmax[(int64_t)y0 * p.W] + p.W, window_max.get());
      for (int yy = y0 + 1; yy <= y1; ++yy) {
        const float* m = &rowmax[(int64_t)yy * p.W];
        for (int x = 0; x < p.W; ++x) window_max[x] = m[x] > window_max[x] ? m[x] : window_max[x];
      }
      const float* row = img + (int64_t)y * p.W;
      int num_candidates = 0;  // branch-free compaction of the columns no neighbour exceeds
      for (int x = 0; x < p.W; ++x) {
        candidates[num_candidates] = x;
        num_candidates += (row[x] >= p.threshold) & (row[x] >= window_max[x]);
      }
      for (int i = 0; i < num_candidates; ++i) {
        const int x = candidates[i];
        if (is_centre_peak(img, p.H, p.W, y, x, r, p.threshold))
          keys.push_back(centre_peak_key(row[x], (int32_t)(y * p.W + x)));
      }
    }
    const int n = (int)std::min<size_t>(keys.size(), (size_t)p.max_peaks);
    std::partial_sort(keys.begin(), keys.begin() + n, keys.end(), std::greater<uint64_t>());
    p.count[b] = n;
    for (int k = 0; k < p.max_peaks; ++k)
      write_centre_slot(p, b, k, k < n ? centre_key_index(keys[k]) : -1);
  }
}

}  // namespace cpu
}  // namespace hmr
