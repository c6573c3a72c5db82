// CPU drivers: OpenMP loops over the shared math in csrc/common/.
#pragma once

#include <cstdint>

#include "../common/centres.h"
#include "../common/crop.h"
#include "../common/lbs.h"
#include "../common/raster.h"
#include "../common/uv.h"

namespace hmr {
namespace cpu {

template <typename T>
void convert_rotations(int kind, const T* in, T* out, int64_t n);

template <typename T>
void kinematic_slerp(const T* abs_vis, const T* rel_glob, const T* weight, const int64_t* parents,
                     int64_t B, int J, T* rel_out, T* abs_out);

template <typename T>
void match_hypotheses(const T* abs_vis, const T* hyp_rel, const T* weight,
                      const int64_t* parents, int64_t B, int64_t K, int J, int64_t* best,
                      T* score);

void lbs(const LbsParams& p);
void iuv_warp(const IuvWarpParams& p);
void part_visibility(const PartVisibilityParams& p);
void rasterize(const RasterParams& p);
void crop_affine(const CropParams& p);
void centre_peaks(const CentreParams& p);

int num_threads();

}  // namespace cpu
}  // namespace hmr
