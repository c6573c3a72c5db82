// Linear blend skinning pieces shared by the CPU and CUDA builds (smplx.lbs semantics).
//
// The batched drivers (csrc/cpu/lbs.cpp, csrc/cuda/lbs.cu) differ only in how they spread the
// work; the per-sample and per-vertex math below is the same code in both.
#pragma once

#include "hd.h"

namespace hmr {

constexpr int kMaxJoints = 64;

// One params struct for the LBS kernel; every array C-contiguous, float32 unless noted.
struct LbsParams {
  int B;                       // batch size
  int V;                       // vertices
  int J;                       // joints (24 for SMPL)
  int NB;                      // shape coefficients
  const float* betas;          // B x NB
  const float* rotmats;        // B x J x 3 x 3 (relative rotations, row-major)
  const float* v_template;     // V x 3
  const float* shapedirs;      // V x 3 x NB
  const void* posedirs;        // (J-1)*9 x V*3, float32 or IEEE half bits (posedirs_fp16)
  bool posedirs_fp16;          // posedirs stored as uint16 half floats, accumulated in fp32
  const float* j_regressor;    // J x V
  const int64_t* parents;      // J, parents[0] = -1, parents[i] < i
  const float* weights;        // V x J skinning weights
  float* vertices;             // out: B x V x 3
  float* joints;               // out: B x J x 3 (posed joints)
};

// IEEE 754 binary16 bits -> float, exact for every value (normals, subnormals, inf, NaN).
HMR_HD float half_bits_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) { mant <<= 1; --exp; }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  union { uint32_t u; float f; } cvt;
  cvt.u = bits;
  return cvt.f;
}

// pose_feature = (R[1:] - I).reshape(207), smplx's ordering.
HMR_HD void pose_feature_one(const float* rotmats, int J, float* pf) {
  for (int j = 1; j < J; ++j)
    for (int k = 0; k < 9; ++k)
      pf[(j - 1) * 9 + k] = rotmats[j * 9 + k] - ((k % 4 == 0) ? 1.0f : 0.0f);
}

// Rigid transform chain (smplx.batch_rigid_transform) for one sample.
// In: rotmats J x 9, rest joints j_rest J x 3. Out: A J x 12 (3x4 row-major, already relative to
// the rest joint so it skins rest-pose vertices directly), posed joints J x 3.
HMR_HD void rigid_chain_one(const float* rotmats, const float* j_rest, const int64_t* parents,
                            int J, float* A, float* posed_joints) {
  // Global transforms G_i = G_parent @ [R_i | J_i - J_parent]; stored in A as 3x4 first.
  for (int i = 0; i < J; ++i) {
    const float* R = rotmats + 9 * i;
    const int p = (int)parents[i];
    float t[3];
    for (int d = 0; d < 3; ++d) t[d] = j_rest[3 * i + d] - (p >= 0 ? j_rest[3 * p + d] : 0.0f);
    float* G = A + 12 * i;
    if (p < 0) {
      for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c) G[4 * r + c] = R[3 * r + c];
        G[4 * r + 3] = t[r];
      }
    } else {
      const float* P = A + 12 * p;
      for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c)
          G[4 * r + c] = P[4 * r] * R[c] + P[4 * r + 1] * R[3 + c] + P[4 * r + 2] * R[6 + c];
        G[4 * r + 3] = P[4 * r] * t[0] + P[4 * r + 1] * t[1] + P[4 * r + 2] * t[2] + P[4 * r + 3];
      }
    }
  }
  // Posed joints are the translations; then make each transform relative to its rest joint.
  for (int i = 0; i < J; ++i) {
    float* G = A + 12 * i;
    const float* jr = j_rest + 3 * i;
    for (int r = 0; r < 3; ++r) {
      posed_joints[3 * i + r] = G[4 * r + 3];
      G[4 * r + 3] -= G[4 * r] * jr[0] + G[4 * r + 1] * jr[1] + G[4 * r + 2] * jr[2];
    }
  }
}

// Skin one vertex: T = sum_j w_j A_j, out = T @ [p; 1]. Zero weights are skipped, which makes
// SMPL's sparse skinning (a few joints per vertex) cheap.
HMR_HD void skin_vertex(const float* A, const float* w, int J, const float* p, float* out) {
  float T[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (int j = 0; j < J; ++j) {
    const float wj = w[j];
    if (wj == 0.0f) continue;
    const float* Aj = A + 12 * j;
    for (int k = 0; k < 12; ++k) T[k] += wj * Aj[k];
  }
  for (int r = 0; r < 3; ++r)
    out[r] = T[4 * r] * p[0] + T[4 * r + 1] * p[1] + T[4 * r + 2] * p[2] + T[4 * r + 3];
}

}  // namespace hmr
