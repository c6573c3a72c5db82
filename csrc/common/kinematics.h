// Per-sample tree walks of VisHMR's merge (paper 000): visibility matching (eq. 4) and
// kinematic slerp (eq. 5). One call handles one sample; CPU and CUDA parallelise over samples
// (and hypotheses), since the walk itself is inherently sequential along the tree.
#pragma once

#include "rotations.h"

namespace hmr {

// Eq. 5. abs_vis, rel_glob, rel_out, abs_out: J x 9 (row-major 3x3); weight: J; parents: J with
// parents[0] = -1 and parents[i] < i (checked by the caller).
template <typename T>
HMR_HD void kinematic_slerp_one(const T* abs_vis, const T* rel_glob, const T* weight,
                                const int64_t* parents, int J, T* rel_out, T* abs_out) {
  for (int i = 0; i < J; ++i) {
    T w = weight[i];
    w = w < T(0) ? T(0) : (w > T(1) ? T(1) : w);  // NaN passes through both tests
    const Mat3<T> vis = load_mat3(abs_vis + 9 * i);
    const Mat3<T> rel = load_mat3(rel_glob + 9 * i);
    const int p = static_cast<int>(parents[i]);
    if (p < 0) {
      const Mat3<T> a = slerp_mat(rel, vis, w);
      store_mat3(a, abs_out + 9 * i);
      store_mat3(a, rel_out + 9 * i);
    } else {
      const Mat3<T> parent_abs = load_mat3(abs_out + 9 * p);
      const Mat3<T> a = slerp_mat(matmul(parent_abs, rel), vis, w);
      store_mat3(a, abs_out + 9 * i);
      store_mat3(matmul_tn(parent_abs, a), rel_out + 9 * i);
    }
  }
}

// Eq. 4 for one hypothesis: chain its relative rotations to absolute ones and score the
// visibility-weighted, sign-invariant quaternion cosine against the visible branch. q_vis holds
// the visible branch's quaternions (computed once per sample), scratch holds J x 9 values.
template <typename T>
HMR_HD T hypothesis_score(const Quat<T>* q_vis, const T* hyp_rel, const T* weight,
                          const int64_t* parents, int J, T* scratch_abs) {
  T score = T(0);
  for (int i = 0; i < J; ++i) {
    const Mat3<T> rel = load_mat3(hyp_rel + 9 * i);
    const int p = static_cast<int>(parents[i]);
    const Mat3<T> a = p < 0 ? rel : matmul(load_mat3(scratch_abs + 9 * p), rel);
    store_mat3(a, scratch_abs + 9 * i);
    const T c = quat_dot(q_vis[i], mat_to_quat(a));
    T w = weight[i];
    w = w < T(0) ? T(0) : (w > T(1) ? T(1) : w);  // as in eq. 5; NaN passes through
    score += w * (c < T(0) ? -c : c);
  }
  return score;
}

}  // namespace hmr
