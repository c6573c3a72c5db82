// Triangle rasterisation math shared by the CPU (and a future CUDA) renderer: pinhole projection
// and perspective-correct barycentrics of a pixel centre.
#pragma once

#include <cmath>

#include "hd.h"

namespace hmr {

struct RasterParams {
  int num_vertices, num_faces, height, width;
  float fx, fy, cx, cy;   // pinhole intrinsics (pixels); OpenCV camera: x right, y down, z forward
  float near;             // faces with a vertex closer than this are skipped
  const float* vertices;  // N x 3, camera frame
  const int32_t* faces;   // F x 3
  int32_t* face_id;       // out: H x W, -1 where empty (initialised by the caller)
  float* bary;            // out: H x W x 3 perspective-correct barycentrics
  float* depth;           // out: H x W camera z, 0 where empty
};

// Screen-space triangle: projected corners, 1/z per corner, signed doubled area, clipped bbox.
struct ScreenTri {
  float x[3], y[3], inv_z[3];
  float area;  // 0 for degenerate or skipped faces
  int x0, x1, y0, y1;
};

HMR_HD ScreenTri project_face(const RasterParams& p, int f) {
  ScreenTri t;
  t.area = 0.0f;
  t.x0 = t.y0 = 0;
  t.x1 = t.y1 = -1;
  for (int k = 0; k < 3; ++k) {
    const float* v = p.vertices + 3 * p.faces[3 * f + k];
    if (!(v[2] >= p.near)) return t;  // behind the near plane (or NaN): skip the face
    t.inv_z[k] = 1.0f / v[2];
    t.x[k] = p.fx * v[0] * t.inv_z[k] + p.cx;
    t.y[k] = p.fy * v[1] * t.inv_z[k] + p.cy;
  }
  t.area = (t.x[1] - t.x[0]) * (t.y[2] - t.y[0]) - (t.x[2] - t.x[0]) * (t.y[1] - t.y[0]);
  if (!(t.area != 0.0f)) { t.area = 0.0f; return t; }
  float xmin = t.x[0], xmax = t.x[0], ymin = t.y[0], ymax = t.y[0];
  for (int k = 1; k < 3; ++k) {
    xmin = t.x[k] < xmin ? t.x[k] : xmin; xmax = t.x[k] > xmax ? t.x[k] : xmax;
    ymin = t.y[k] < ymin ? t.y[k] : ymin; ymax = t.y[k] > ymax ? t.y[k] : ymax;
  }
  // pixel (i, j) has its centre at (i + 0.5, j + 0.5)
  t.x0 = (int)std::ceil(xmin - 0.5f); t.x1 = (int)std::floor(xmax - 0.5f);
  t.y0 = (int)std::ceil(ymin - 0.5f); t.y1 = (int)std::floor(ymax - 0.5f);
  t.x0 = t.x0 < 0 ? 0 : t.x0; t.y0 = t.y0 < 0 ? 0 : t.y0;
  t.x1 = t.x1 >= p.width ? p.width - 1 : t.x1; t.y1 = t.y1 >= p.height ? p.height - 1 : t.y1;
  return t;
}

// Barycentrics of point (px, py): screen-space ones from edge functions (either winding), then
// perspective-corrected with 1/z. Returns false outside the triangle; z receives the depth.
HMR_HD bool pixel_barycentrics(const ScreenTri& t, float px, float py, float* b, float* z) {
  float w[3];
  w[0] = (t.x[1] - px) * (t.y[2] - py) - (t.x[2] - px) * (t.y[1] - py);
  w[1] = (t.x[2] - px) * (t.y[0] - py) - (t.x[0] - px) * (t.y[2] - py);
  w[2] = (t.x[0] - px) * (t.y[1] - py) - (t.x[1] - px) * (t.y[0] - py);
  const float s = t.area > 0.0f ? 1.0f : -1.0f;
  if (w[0] * s < 0.0f || w[1] * s < 0.0f || w[2] * s < 0.0f) return false;
  const float inv_area = 1.0f / t.area;
  float q[3], qs = 0.0f;
  for (int k = 0; k < 3; ++k) { q[k] = w[k] * inv_area * t.inv_z[k]; qs += q[k]; }
  if (!(qs > 0.0f)) return false;
  for (int k = 0; k < 3; ++k) b[k] = q[k] / qs;
  *z = 1.0f / qs;
  return true;
}

}  // namespace hmr
