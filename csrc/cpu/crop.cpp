// Batched affine crops on the CPU (see common/crop.h).
#include <omp.h>

#include "../common/crop.h"
#include "ops.h"

namespace hmr {
namespace cpu {

void crop_affine(const CropParams& p) {
  const int64_t rows = (int64_t)p.N * p.S;
#pragma omp parallel for schedule(static) if (rows > 64)
  for (int64_t r = 0; r < rows; ++r) {
    const int n = (int)(r / p.S), y = (int)(r % p.S);
    for (int x = 0; x < p.S; ++x) crop_pixel(p, n, y, x);
  }
}

}  // namespace cpu
}  // namespace hmr
