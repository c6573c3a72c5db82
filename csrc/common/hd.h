// Host/device portability macros shared by the CPU and CUDA builds.
//
// Everything under csrc/common/ is framework-free math compiled twice: by the C++ compiler into
// the CPU kernels and by nvcc into the CUDA kernels, so the CPU tests exercise the device math.
#pragma once

#if defined(__CUDACC__)
#define HMR_HD __host__ __device__ __forceinline__
#else
#define HMR_HD inline
#endif

#include <cstdint>

namespace hmr {

constexpr int kNumJoints = 24;
constexpr int kNumPoseFeatures = (kNumJoints - 1) * 9;  // 207 rows of posedirs

}  // namespace hmr
