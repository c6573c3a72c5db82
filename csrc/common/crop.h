// Batched affine crops of an RGB uint8 image into normalised float planes (the regressors'
// input), shared by the CPU and CUDA builds. Bilinear sampling with pixel centres at integer
// coordinates (OpenCV's warpAffine convention); samples outside the image read 0 (black).
#pragma once

#include <cmath>

#include "hd.h"

namespace hmr {

struct CropParams {
  int N, H, W, S;            // crops, image height/width, crop side
  const uint8_t* image;      // H x W x 3 RGB
  const float* affine;       // N x 2 x 3: crop pixel (x, y, 1) -> image pixel
  float mean[3], std[3];     // normalisation of x / 255
  float* out;                // N x 3 x S x S
};

HMR_HD float image_at(const CropParams& p, int x, int y, int c) {
  if (x < 0 || y < 0 || x >= p.W || y >= p.H) return 0.0f;
  return (float)p.image[((int64_t)y * p.W + x) * 3 + c];
}

// One output pixel (n, y, x): three normalised channel values.
HMR_HD void crop_pixel(const CropParams& p, int n, int y, int x) {
  const float* A = p.affine + 6 * n;
  const float sx = A[0] * x + A[1] * y + A[2];
  const float sy = A[3] * x + A[4] * y + A[5];
  const float fx = floor(sx), fy = floor(sy);
  const int x0 = (int)fx, y0 = (int)fy;
  const float ax = sx - fx, ay = sy - fy;
  const int64_t plane = (int64_t)p.S * p.S;
  float* o = p.out + (int64_t)n * 3 * plane + (int64_t)y * p.S + x;
  for (int c = 0; c < 3; ++c) {
    const float v = (1 - ay) * ((1 - ax) * image_at(p, x0, y0, c) + ax * image_at(p, x0 + 1, y0, c)) +
                    ay * ((1 - ax) * image_at(p, x0, y0 + 1, c) + ax * image_at(p, x0 + 1, y0 + 1, c));
    o[c * plane] = (v * (1.0f / 255.0f) - p.mean[c]) / p.std[c];
  }
}

}  // namespace hmr
