// CUDA launchers. Pointers are device pointers; `stream` is a cudaStream_t passed as an integer
// so the bindings need no CUDA headers. Every launcher returns a CUDA error string, empty on
// success, which the bindings raise as a Python error.
#pragma once

#include <cstdint>
#include <string>

#include "../common/centres.h"
#include "../common/crop.h"
#include "../common/lbs.h"
#include "../common/uv.h"

namespace hmr {
namespace cuda {

// Number of visible CUDA devices (0 when there is no driver or device).
int device_count();

// Make the device that owns `device_ptr` current (a launch goes to the current device, and the
// caller's current device may be another one); `previous` receives the device to restore with
// restore_device. Returns a CUDA error string, empty on success.
std::string enter_device_of(uintptr_t device_ptr, int* previous);
void restore_device(int previous);

template <typename T>
std::string convert_rotations(int kind, const T* in, T* out, int64_t n, uintptr_t stream);

template <typename T>
std::string kinematic_slerp(const T* abs_vis, const T* rel_glob, const T* weight,
                            const int64_t* parents, int64_t B, int J, T* rel_out, T* abs_out,
                            uintptr_t stream);

// score_scratch needs B*K*J*9 elements of T.
template <typename T>
std::string match_hypotheses(const T* abs_vis, const T* hyp_rel, const T* weight,
                             const int64_t* parents, int64_t B, int64_t K, int J, int64_t* best,
                             T* score, T* scratch, uintptr_t stream);

// Workspace floats needed by lbs for these sizes.
int64_t lbs_workspace_floats(int B, int J, int NB);
std::string lbs(const LbsParams& p, float* workspace, uintptr_t stream);

// Workspace floats needed by iuv_warp (per-pixel texel ids stored as floats bit-cast to int).
int64_t iuv_warp_workspace_floats(int B, int H, int W);
std::string iuv_warp(const IuvWarpParams& p, float* workspace, uintptr_t stream);
std::string part_visibility(const PartVisibilityParams& p, uintptr_t stream);
std::string crop_affine(const CropParams& p, uintptr_t stream);
// scratch needs B*H*W keys.
std::string centre_peaks(const CentreParams& p, uint64_t* scratch, uintptr_t stream);

}  // namespace cuda
}  // namespace hmr
