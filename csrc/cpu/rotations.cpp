// Element-wise rotation conversions and VisHMR's merge (eq. 4, eq. 5) on the CPU.
#include <omp.h>

#include "../common/kinematics.h"
#include "ops.h"

namespace hmr {
namespace cpu {

int num_threads() { return omp_get_max_threads(); }

template <typename T>
void convert_rotations(int kind, const T* in, T* out, int64_t n) {
  const int si = rotation_in_size(kind), so = rotation_out_size(kind);
#pragma omp parallel for schedule(static) if (n > 4096)
  for (int64_t i = 0; i < n; ++i) convert_rotation_one<T>(kind, in + si * i, out + so * i);
}

template <typename T>
void kinematic_slerp(const T* abs_vis, const T* rel_glob, const T* weight, const int64_t* parents,
                     int64_t B, int J, T* rel_out, T* abs_out) {
  const int64_t m = (int64_t)J * 9;
#pragma omp parallel for schedule(static) if (B > 16)
  for (int64_t b = 0; b < B; ++b)
    kinematic_slerp_one<T>(abs_vis + b * m, rel_glob + b * m, weight + b * J, parents, J,
                           rel_out + b * m, abs_out + b * m);
}

template <typename T>
void match_hypotheses(const T* abs_vis, const T* hyp_rel, const T* weight,
                      const int64_t* parents, int64_t B, int64_t K, int J, int64_t* best,
                      T* score) {
  const int64_t m = (int64_t)J * 9;
#pragma omp parallel for schedule(static) if (B * K > 16)
  for (int64_t b = 0; b < B; ++b) {
    Quat<T> q_vis[kMaxJoints];
    T scratch[kMaxJoints * 9];
    for (int i = 0; i < J; ++i) q_vis[i] = mat_to_quat(load_mat3(abs_vis + b * m + 9 * i));
    int64_t arg = 0;
    for (int64_t k = 0; k < K; ++k) {
      const T s = hypothesis_score<T>(q_vis, hyp_rel + (b * K + k) * m, weight + b * J, parents,
                                      J, scratch);
      score[b * K + k] = s;
      if (s > score[b * K + arg]) arg = k;  // first index wins ties; NaN never wins
    }
    best[b] = arg;
  }
}

#define HMR_INSTANTIATE(T)                                                                     \
  template void convert_rotations<T>(int, const T*, T*, int64_t);                              \
  template void kinematic_slerp<T>(const T*, const T*, const T*, const int64_t*, int64_t, int, \
                                   T*, T*);                                                    \
  template void match_hypotheses<T>(const T*, const T*, const T*, const int64_t*, int64_t,     \
                                    int64_t, int, int64_t*, T*);
HMR_INSTANTIATE(float)
HMR_INSTANTIATE(double)
#undef HMR_INSTANTIATE

}  // namespace cpu
}  // namespace hmr
