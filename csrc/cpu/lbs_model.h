// A body model prepared once for fast repeated LBS on the CPU.
//
// What the one-shot lbs() must redo on every call is done here once: the joint basis (rest
// joints are affine in betas), CSR skinning weights, and the blend shapes repacked tile-major
// (32 vertices x all nonzero rows, contiguous) so every tile streams from memory front to back.
// Rows that are zero over a whole tile are dropped: block-sparse pose correctives (the
// procedural body's) cost only their nonzero rows; dense ones (SMPL's) cost what they cost.
#pragma once

#include <cstdint>
#include <vector>

#include "blend.h"

namespace hmr {
namespace cpu {

class LbsModel {
 public:
  // Copies the model data; posedirs are stored as given (float32, or fp16 bits when
  // posedirs_fp16, then accumulated in fp32).
  LbsModel(int V, int J, int NB, const float* v_template, const float* shapedirs,
           const void* posedirs, bool posedirs_fp16, const float* j_regressor,
           const int64_t* parents, const float* weights);

  // vertices: B x V x 3, joints: B x J x 3.
  void forward(int B, const float* betas, const float* rotmats, float* vertices,
               float* joints) const;

  int num_vertices() const { return V_; }
  int num_joints() const { return J_; }
  int num_betas() const { return NB_; }
  bool posedirs_fp16() const { return fp16_; }
  // Blend-shape rows kept after dropping all-zero tile rows, and the dense count.
  int64_t stored_rows() const { return (int64_t)shape_feature_.size() + (int64_t)pose_feature_.size(); }
  int64_t dense_rows() const { return (int64_t)num_tiles_ * (NB_ + P_); }

 private:
  int V_, J_, NB_, P_, num_tiles_;
  bool fp16_;
  std::vector<float> v_template_;
  std::vector<float> basis_;  // (J*3) x (NB+1): rest joints = basis @ [1, betas]
  std::vector<int64_t> parents_;
  blend::Sparse skin_;
  // Per tile t, rows [start[t], start[t+1]) of kTileCols values, each scaled by one feature of
  // the sample's feature vector [betas (NB), pose feature (P)].
  std::vector<int64_t> shape_start_, pose_start_;
  std::vector<int32_t> shape_feature_, pose_feature_;
  std::vector<float> shape_rows_, pose_rows32_;
  std::vector<uint16_t> pose_rows16_;
};

}  // namespace cpu
}  // namespace hmr
