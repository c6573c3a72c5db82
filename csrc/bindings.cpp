// pybind11 bindings of the kernel library: the module hmr_ros._C.
//
// Deliberately thin: every op takes raw pointers (as integers) and sizes. Shapes, dtypes,
// contiguity and devices are validated once in Python (hmr_ros/kernels/), the only importer of
// this module, for NumPy and CUDA arrays alike. The GIL is released while kernels run.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>

#include <stdexcept>
#include <string>

#include "cpu/lbs_model.h"
#include "cpu/ops.h"
#if defined(HMR_ROS_WITH_CUDA)
#include "cuda/ops.h"
#endif

namespace py = pybind11;
using hmr::IuvWarpParams;
using hmr::LbsParams;
using hmr::PartVisibilityParams;

namespace {

template <typename T>
T* ptr(uintptr_t p) { return reinterpret_cast<T*>(p); }

LbsParams make_lbs_params(int B, int V, int J, int NB, uintptr_t betas, uintptr_t rotmats,
                          uintptr_t v_template, uintptr_t shapedirs, uintptr_t posedirs,
                          bool posedirs_fp16, uintptr_t j_regressor, uintptr_t parents,
                          uintptr_t weights, uintptr_t vertices, uintptr_t joints) {
  if (J < 1 || J > hmr::kMaxJoints)
    throw std::invalid_argument("lbs: number of joints must be in [1, 64], got " + std::to_string(J));
  return LbsParams{B, V, J, NB, ptr<const float>(betas), ptr<const float>(rotmats),
                   ptr<const float>(v_template), ptr<const float>(shapedirs),
                   ptr<const void>(posedirs), posedirs_fp16, ptr<const float>(j_regressor),
                   ptr<const int64_t>(parents), ptr<const float>(weights), ptr<float>(vertices),
                   ptr<float>(joints)};
}

hmr::CropParams make_crop_params(int N, int H, int W, int S, uintptr_t image, uintptr_t affine,
                                 const std::array<float, 3>& mean, const std::array<float, 3>& std,
                                 uintptr_t out) {
  hmr::CropParams p{N, H, W, S, ptr<const uint8_t>(image), ptr<const float>(affine), {}, {},
                    ptr<float>(out)};
  for (int c = 0; c < 3; ++c) { p.mean[c] = mean[c]; p.std[c] = std[c]; }
  return p;
}

hmr::CentreParams make_centre_params(int B, int H, int W, int window, int max_peaks,
                                     float threshold, uintptr_t heatmap, uintptr_t count,
                                     uintptr_t scores, uintptr_t xy, uintptr_t index) {
  if (window < 1 || window % 2 == 0 || max_peaks < 1)
    throw std::invalid_argument("centre_peaks: window must be odd and max_peaks >= 1");
  return hmr::CentreParams{B, H, W, window / 2, max_peaks, threshold,
                           ptr<const float>(heatmap), ptr<int32_t>(count), ptr<float>(scores),
                           ptr<float>(xy), ptr<int32_t>(index)};
}

void check_joints(int J, const char* op) {
  if (J < 1 || J > hmr::kMaxJoints)
    throw std::invalid_argument(std::string(op) + ": number of joints must be in [1, 64], got " +
                                std::to_string(J));
}

#if defined(HMR_ROS_WITH_CUDA)
void raise_if(const std::string& err, const char* op) {
  if (!err.empty()) throw std::runtime_error(std::string(op) + ": CUDA error: " + err);
}
#endif

}  // namespace

#if defined(HMR_ROS_WITH_CUDA)
// Makes the device that holds `ptr` current for one launch and restores the caller's device.
struct DeviceScope {
  int previous = -1;
  DeviceScope(uintptr_t ptr, const char* op) { raise_if(hmr::cuda::enter_device_of(ptr, &previous), op); }
  ~DeviceScope() { hmr::cuda::restore_device(previous); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
};
#endif

PYBIND11_MODULE(_C, m) {
  m.doc() = "hmr_ros kernel library (CPU always; CUDA when compiled in). Use hmr_ros.kernels.";
  using py::arg;
  const auto nogil = py::call_guard<py::gil_scoped_release>();

  m.def("num_threads", &hmr::cpu::num_threads, "OpenMP threads the CPU kernels use.");

  m.def("cpu_convert_rotations",
        [](int kind, uintptr_t in, uintptr_t out, int64_t n, bool f64) {
          if (kind < 0 || kind > 7) throw std::invalid_argument("unknown rotation conversion");
          if (f64) hmr::cpu::convert_rotations<double>(kind, ptr<const double>(in), ptr<double>(out), n);
          else hmr::cpu::convert_rotations<float>(kind, ptr<const float>(in), ptr<float>(out), n);
        }, "Element-wise rotation conversion (kind: see csrc/common/rotations.h).", nogil);

  m.def("cpu_kinematic_slerp",
        [](uintptr_t abs_vis, uintptr_t rel_glob, uintptr_t weight, uintptr_t parents, int64_t B,
           int J, uintptr_t rel_out, uintptr_t abs_out, bool f64) {
          check_joints(J, "kinematic_slerp");
          if (f64)
            hmr::cpu::kinematic_slerp<double>(ptr<const double>(abs_vis), ptr<const double>(rel_glob),
                                              ptr<const double>(weight), ptr<const int64_t>(parents),
                                              B, J, ptr<double>(rel_out), ptr<double>(abs_out));
          else
            hmr::cpu::kinematic_slerp<float>(ptr<const float>(abs_vis), ptr<const float>(rel_glob),
                                             ptr<const float>(weight), ptr<const int64_t>(parents),
                                             B, J, ptr<float>(rel_out), ptr<float>(abs_out));
        }, "Kinematic slerp (paper 000 eq. 5).", nogil);

  m.def("cpu_match_hypotheses",
        [](uintptr_t abs_vis, uintptr_t hyp_rel, uintptr_t weight, uintptr_t parents, int64_t B,
           int64_t K, int J, uintptr_t best, uintptr_t score, bool f64) {
          check_joints(J, "match_hypotheses");
          if (f64)
            hmr::cpu::match_hypotheses<double>(ptr<const double>(abs_vis), ptr<const double>(hyp_rel),
                                               ptr<const double>(weight), ptr<const int64_t>(parents),
                                               B, K, J, ptr<int64_t>(best), ptr<double>(score));
          else
            hmr::cpu::match_hypotheses<float>(ptr<const float>(abs_vis), ptr<const float>(hyp_rel),
                                              ptr<const float>(weight), ptr<const int64_t>(parents),
                                              B, K, J, ptr<int64_t>(best), ptr<float>(score));
        }, "Visibility matching of hypotheses (paper 000 eq. 4).", nogil);

  m.def("cpu_lbs",
        [](int B, int V, int J, int NB, uintptr_t betas, uintptr_t rotmats, uintptr_t v_template,
           uintptr_t shapedirs, uintptr_t posedirs, bool posedirs_fp16, uintptr_t j_regressor,
           uintptr_t parents, uintptr_t weights, uintptr_t vertices, uintptr_t joints) {
          hmr::cpu::lbs(make_lbs_params(B, V, J, NB, betas, rotmats, v_template, shapedirs,
                                        posedirs, posedirs_fp16, j_regressor, parents, weights,
                                        vertices, joints));
        }, "Batched linear blend skinning (smplx.lbs semantics).", nogil);

  py::class_<hmr::cpu::LbsModel>(m, "CpuLbsModel",
                                 "Body model prepared for repeated LBS (copies the data).")
      .def(py::init([](int V, int J, int NB, uintptr_t v_template, uintptr_t shapedirs,
                       uintptr_t posedirs, bool posedirs_fp16, uintptr_t j_regressor,
                       uintptr_t parents, uintptr_t weights) {
             if (J < 1 || J > hmr::kMaxJoints)
               throw std::invalid_argument("LbsModel: number of joints must be in [1, 64]");
             return new hmr::cpu::LbsModel(V, J, NB, ptr<const float>(v_template),
                                           ptr<const float>(shapedirs), ptr<const void>(posedirs),
                                           posedirs_fp16, ptr<const float>(j_regressor),
                                           ptr<const int64_t>(parents), ptr<const float>(weights));
           }), nogil)
      .def("forward",
           [](const hmr::cpu::LbsModel& self, int B, uintptr_t betas, uintptr_t rotmats,
              uintptr_t vertices, uintptr_t joints) {
             self.forward(B, ptr<const float>(betas), ptr<const float>(rotmats), ptr<float>(vertices),
                          ptr<float>(joints));
           }, nogil)
      .def_property_readonly("stored_rows", &hmr::cpu::LbsModel::stored_rows)
      .def_property_readonly("dense_rows", &hmr::cpu::LbsModel::dense_rows);

  m.def("cpu_iuv_warp",
        [](int B, int C, int H, int W, int S, float fg_threshold, uintptr_t features,
           uintptr_t iuv, uintptr_t out) {
          hmr::cpu::iuv_warp(IuvWarpParams{B, C, H, W, S, fg_threshold, ptr<const float>(features),
                                           ptr<const float>(iuv), ptr<float>(out)});
        }, "Warp features to the UV atlas through an IUV map; out must be zeroed.", nogil);

  m.def("cpu_part_visibility",
        [](int B, int S, int num_parts, uintptr_t occupancy, uintptr_t part_map, uintptr_t out) {
          hmr::cpu::part_visibility(PartVisibilityParams{B, S, num_parts, ptr<const float>(occupancy),
                                                         ptr<const int32_t>(part_map), ptr<float>(out)});
        }, "Per-part visibility from UV occupancy (paper 000 eq. 1).", nogil);

  m.def("cpu_rasterize",
        [](int num_vertices, int num_faces, int height, int width, float fx, float fy, float cx,
           float cy, float near, uintptr_t vertices, uintptr_t faces, uintptr_t face_id,
           uintptr_t bary, uintptr_t depth) {
          hmr::cpu::rasterize(hmr::RasterParams{num_vertices, num_faces, height, width, fx, fy,
                                                cx, cy, near, ptr<const float>(vertices),
                                                ptr<const int32_t>(faces), ptr<int32_t>(face_id),
                                                ptr<float>(bary), ptr<float>(depth)});
        }, "Z-buffer rasterisation; face_id must be -1 and depth/bary 0 on entry.", nogil);

  m.def("cpu_crop_affine",
        [](int N, int H, int W, int S, uintptr_t image, uintptr_t affine, std::array<float, 3> mean,
           std::array<float, 3> std, uintptr_t out) {
          hmr::cpu::crop_affine(make_crop_params(N, H, W, S, image, affine, mean, std, out));
        }, "Batched affine crops of an RGB uint8 image, normalised, N x 3 x S x S.", nogil);

  m.def("cpu_centre_peaks",
        [](int B, int H, int W, int window, int max_peaks, float threshold, uintptr_t heatmap,
           uintptr_t count, uintptr_t scores, uintptr_t xy, uintptr_t index) {
          hmr::cpu::centre_peaks(make_centre_params(B, H, W, window, max_peaks, threshold,
                                                    heatmap, count, scores, xy, index));
        }, "Top-K local maxima (max-pool NMS) of B x H x W heatmaps.", nogil);

#if defined(HMR_ROS_WITH_CUDA)
  m.attr("has_cuda") = true;
  // Every CUDA launch below runs on the device that holds its first input (DeviceScope).
  m.def("cuda_device_count", &hmr::cuda::device_count, "Visible CUDA devices (0 without a driver).");
  m.def("cuda_lbs_workspace_floats", &hmr::cuda::lbs_workspace_floats);
  m.def("cuda_iuv_warp_workspace_floats", &hmr::cuda::iuv_warp_workspace_floats);

  m.def("cuda_convert_rotations",
        [](int kind, uintptr_t in, uintptr_t out, int64_t n, bool f64, uintptr_t stream) {
          DeviceScope scope(in, "convert_rotations");
          if (kind < 0 || kind > 7) throw std::invalid_argument("unknown rotation conversion");
          raise_if(f64 ? hmr::cuda::convert_rotations<double>(kind, ptr<const double>(in), ptr<double>(out), n, stream)
                       : hmr::cuda::convert_rotations<float>(kind, ptr<const float>(in), ptr<float>(out), n, stream),
                   "convert_rotations");
        }, nogil);

  m.def("cuda_kinematic_slerp",
        [](uintptr_t abs_vis, uintptr_t rel_glob, uintptr_t weight, uintptr_t parents, int64_t B,
           int J, uintptr_t rel_out, uintptr_t abs_out, bool f64, uintptr_t stream) {
          DeviceScope scope(abs_vis, "kinematic_slerp");
          check_joints(J, "kinematic_slerp");
          raise_if(f64 ? hmr::cuda::kinematic_slerp<double>(ptr<const double>(abs_vis), ptr<const double>(rel_glob),
                                                            ptr<const double>(weight), ptr<const int64_t>(parents), B, J,
                                                            ptr<double>(rel_out), ptr<double>(abs_out), stream)
                       : hmr::cuda::kinematic_slerp<float>(ptr<const float>(abs_vis), ptr<const float>(rel_glob),
                                                           ptr<const float>(weight), ptr<const int64_t>(parents), B, J,
                                                           ptr<float>(rel_out), ptr<float>(abs_out), stream),
                   "kinematic_slerp");
        }, nogil);

  m.def("cuda_match_hypotheses",
        [](uintptr_t abs_vis, uintptr_t hyp_rel, uintptr_t weight, uintptr_t parents, int64_t B,
           int64_t K, int J, uintptr_t best, uintptr_t score, uintptr_t scratch, bool f64,
           uintptr_t stream) {
          DeviceScope scope(abs_vis, "match_hypotheses");
          check_joints(J, "match_hypotheses");
          raise_if(f64 ? hmr::cuda::match_hypotheses<double>(ptr<const double>(abs_vis), ptr<const double>(hyp_rel),
                                                             ptr<const double>(weight), ptr<const int64_t>(parents), B, K, J,
                                                             ptr<int64_t>(best), ptr<double>(score), ptr<double>(scratch), stream)
                       : hmr::cuda::match_hypotheses<float>(ptr<const float>(abs_vis), ptr<const float>(hyp_rel),
                                                            ptr<const float>(weight), ptr<const int64_t>(parents), B, K, J,
                                                            ptr<int64_t>(best), ptr<float>(score), ptr<float>(scratch), stream),
                   "match_hypotheses");
        }, nogil);

  m.def("cuda_lbs",
        [](int B, int V, int J, int NB, uintptr_t betas, uintptr_t rotmats, uintptr_t v_template,
           uintptr_t shapedirs, uintptr_t posedirs, bool posedirs_fp16, uintptr_t j_regressor,
           uintptr_t parents, uintptr_t weights, uintptr_t vertices, uintptr_t joints,
           uintptr_t workspace, uintptr_t stream) {
          DeviceScope scope(betas, "lbs");
          raise_if(hmr::cuda::lbs(make_lbs_params(B, V, J, NB, betas, rotmats, v_template, shapedirs,
                                                  posedirs, posedirs_fp16, j_regressor, parents,
                                                  weights, vertices, joints),
                                  ptr<float>(workspace), stream),
                   "lbs");
        }, nogil);

  m.def("cuda_iuv_warp",
        [](int B, int C, int H, int W, int S, float fg_threshold, uintptr_t features,
           uintptr_t iuv, uintptr_t out, uintptr_t workspace, uintptr_t stream) {
          DeviceScope scope(features, "iuv_warp");
          raise_if(hmr::cuda::iuv_warp(IuvWarpParams{B, C, H, W, S, fg_threshold, ptr<const float>(features),
                                                     ptr<const float>(iuv), ptr<float>(out)},
                                       ptr<float>(workspace), stream),
                   "iuv_warp");
        }, nogil);

  m.def("cuda_crop_affine",
        [](int N, int H, int W, int S, uintptr_t image, uintptr_t affine, std::array<float, 3> mean,
           std::array<float, 3> std, uintptr_t out, uintptr_t stream) {
          DeviceScope scope(image, "crop_affine");
          raise_if(hmr::cuda::crop_affine(make_crop_params(N, H, W, S, image, affine, mean, std, out),
                                          stream),
                   "crop_affine");
        }, nogil);

  m.def("cuda_centre_peaks",
        [](int B, int H, int W, int window, int max_peaks, float threshold, uintptr_t heatmap,
           uintptr_t count, uintptr_t scores, uintptr_t xy, uintptr_t index, uintptr_t scratch,
           uintptr_t stream) {
          DeviceScope scope(heatmap, "centre_peaks");
          raise_if(hmr::cuda::centre_peaks(make_centre_params(B, H, W, window, max_peaks,
                                                              threshold, heatmap, count, scores,
                                                              xy, index),
                                           ptr<uint64_t>(scratch), stream),
                   "centre_peaks");
        }, nogil);

  m.def("cuda_part_visibility",
        [](int B, int S, int num_parts, uintptr_t occupancy, uintptr_t part_map, uintptr_t out,
           uintptr_t stream) {
          DeviceScope scope(occupancy, "part_visibility");
          raise_if(hmr::cuda::part_visibility(PartVisibilityParams{B, S, num_parts, ptr<const float>(occupancy),
                                                                   ptr<const int32_t>(part_map), ptr<float>(out)},
                                              stream),
                   "part_visibility");
        }, nogil);
#else
  m.attr("has_cuda") = false;
#endif
}
