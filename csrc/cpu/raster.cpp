// Z-buffer triangle rasteriser on the CPU: face ids, perspective-correct barycentrics, depth.
//
// Faces are projected once (in parallel); then each thread owns a band of image rows and walks
// every face overlapping it, so the z-buffer needs no atomics and the result is deterministic
// (ties in depth keep the lower face index).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../common/raster.h"
#include "ops.h"

namespace hmr {
namespace cpu {

void rasterize(const RasterParams& p) {
  std::vector<ScreenTri> tris(p.num_faces);
#pragma omp parallel for schedule(static)
  for (int f = 0; f < p.num_faces; ++f) tris[f] = project_face(p, f);

  constexpr int kBandRows = 8;
  const int bands = (p.height + kBandRows - 1) / kBandRows;
#pragma omp parallel for schedule(dynamic, 1)
  for (int band = 0; band < bands; ++band) {
    const int r0 = band * kBandRows, r1 = std::min(p.height, r0 + kBandRows) - 1;
    for (int f = 0; f < p.num_faces; ++f) {
      const ScreenTri& t = tris[f];
      if (t.area == 0.0f || t.y1 < r0 || t.y0 > r1 || t.x1 < t.x0) continue;
      const int ya = std::max(t.y0, r0), yb = std::min(t.y1, r1);
      for (int y = ya; y <= yb; ++y)
        for (int x = t.x0; x <= t.x1; ++x) {
          float b[3], z;
          if (!pixel_barycentrics(t, x + 0.5f, y + 0.5f, b, &z)) continue;
          const int64_t i = (int64_t)y * p.width + x;
          const int32_t cur = p.face_id[i];
          if (cur >= 0 && !(z < p.depth[i])) continue;  // keep the nearer (earlier on ties)
          p.face_id[i] = f;
          p.depth[i] = z;
          p.bary[3 * i] = b[0]; p.bary[3 * i + 1] = b[1]; p.bary[3 * i + 2] = b[2];
        }
    }
  }
}

}  // namespace cpu
}  // namespace hmr
