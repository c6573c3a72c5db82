// Rotation math on 3x3 matrices and (w, x, y, z) quaternions, float and double.
//
// Conventions (DESIGN.md §4): matrices row-major; quaternions (w, x, y, z) canonicalised to
// w >= 0 when produced; 6D = first two *columns* (R00, R10, R20, R01, R11, R21); slerp takes
// the short arc and falls back to normalised lerp when nearly parallel.
#pragma once

#include <cmath>

#include "hd.h"

namespace hmr {

template <typename T>
struct Mat3 {
  T m[9];  // row-major
  HMR_HD T operator()(int r, int c) const { return m[r * 3 + c]; }
  HMR_HD T& operator()(int r, int c) { return m[r * 3 + c]; }
};

template <typename T>
struct Quat {
  T w, x, y, z;
};

template <typename T>
HMR_HD Mat3<T> load_mat3(const T* p) {
  Mat3<T> r;
  for (int i = 0; i < 9; ++i) r.m[i] = p[i];
  return r;
}

template <typename T>
HMR_HD void store_mat3(const Mat3<T>& a, T* p) {
  for (int i = 0; i < 9; ++i) p[i] = a.m[i];
}

template <typename T>
HMR_HD Mat3<T> matmul(const Mat3<T>& a, const Mat3<T>& b) {
  Mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      r(i, j) = a(i, 0) * b(0, j) + a(i, 1) * b(1, j) + a(i, 2) * b(2, j);
  return r;
}

// a^T @ b
template <typename T>
HMR_HD Mat3<T> matmul_tn(const Mat3<T>& a, const Mat3<T>& b) {
  Mat3<T> r;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      r(i, j) = a(0, i) * b(0, j) + a(1, i) * b(1, j) + a(2, i) * b(2, j);
  return r;
}

// Shepperd's method: pick the largest of (trace, diagonal entries) so the division is by a
// number >= 1/2, which keeps it accurate for every rotation including 180 degrees.
template <typename T>
HMR_HD Quat<T> mat_to_quat(const Mat3<T>& R) {
  const T tr = R(0, 0) + R(1, 1) + R(2, 2);
  Quat<T> q;
  if (tr >= R(0, 0) && tr >= R(1, 1) && tr >= R(2, 2)) {
    const T s = sqrt(T(1) + tr) * T(2);  // 4w
    q.w = T(0.25) * s;
    q.x = (R(2, 1) - R(1, 2)) / s;
    q.y = (R(0, 2) - R(2, 0)) / s;
    q.z = (R(1, 0) - R(0, 1)) / s;
  } else if (R(0, 0) >= R(1, 1) && R(0, 0) >= R(2, 2)) {
    const T s = sqrt(T(1) + R(0, 0) - R(1, 1) - R(2, 2)) * T(2);  // 4x
    q.w = (R(2, 1) - R(1, 2)) / s;
    q.x = T(0.25) * s;
    q.y = (R(0, 1) + R(1, 0)) / s;
    q.z = (R(0, 2) + R(2, 0)) / s;
  } else if (R(1, 1) >= R(2, 2)) {
    const T s = sqrt(T(1) + R(1, 1) - R(0, 0) - R(2, 2)) * T(2);  // 4y
    q.w = (R(0, 2) - R(2, 0)) / s;
    q.x = (R(0, 1) + R(1, 0)) / s;
    q.y = T(0.25) * s;
    q.z = (R(1, 2) + R(2, 1)) / s;
  } else {
    const T s = sqrt(T(1) + R(2, 2) - R(0, 0) - R(1, 1)) * T(2);  // 4z
    q.w = (R(1, 0) - R(0, 1)) / s;
    q.x = (R(0, 2) + R(2, 0)) / s;
    q.y = (R(1, 2) + R(2, 1)) / s;
    q.z = T(0.25) * s;
  }
  // Normalise (input may be slightly non-orthonormal) and canonicalise to w >= 0.
  T n = sqrt(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z);
  if (q.w < T(0)) n = -n;
  q.w /= n; q.x /= n; q.y /= n; q.z /= n;
  return q;
}

template <typename T>
HMR_HD Mat3<T> quat_to_mat(Quat<T> q) {
  const T n = sqrt(q.w * q.w + q.x * q.x + q.y * q.y + q.z * q.z);
  q.w /= n; q.x /= n; q.y /= n; q.z /= n;
  const T ww = q.w * q.w, xx = q.x * q.x, yy = q.y * q.y, zz = q.z * q.z;
  const T wx = q.w * q.x, wy = q.w * q.y, wz = q.w * q.z;
  const T xy = q.x * q.y, xz = q.x * q.z, yz = q.y * q.z;
  Mat3<T> R;
  R(0, 0) = ww + xx - yy - zz; R(0, 1) = T(2) * (xy - wz);      R(0, 2) = T(2) * (xz + wy);
  R(1, 0) = T(2) * (xy + wz);      R(1, 1) = ww - xx + yy - zz; R(1, 2) = T(2) * (yz - wx);
  R(2, 0) = T(2) * (xz - wy);      R(2, 1) = T(2) * (yz + wx);  R(2, 2) = ww - xx - yy + zz;
  return R;
}

// Axis-angle (rotation vector) -> quaternion; sin(θ/2)/θ by its Taylor series near 0.
template <typename T>
HMR_HD Quat<T> aa_to_quat(T ax, T ay, T az) {
  const T th2 = ax * ax + ay * ay + az * az;
  const T th = sqrt(th2);
  T k, c;
  if (th < T(1e-4)) {
    k = T(0.5) - th2 / T(48);
    c = T(1) - th2 / T(8);
  } else {
    k = sin(T(0.5) * th) / th;
    c = cos(T(0.5) * th);
  }
  Quat<T> q{c, ax * k, ay * k, az * k};
  return q;
}

// Quaternion -> axis-angle with angle in [0, π]; atan2 keeps it accurate near 0 and π.
template <typename T>
HMR_HD void quat_to_aa(Quat<T> q, T* aa) {
  if (q.w < T(0)) { q.w = -q.w; q.x = -q.x; q.y = -q.y; q.z = -q.z; }
  const T n = sqrt(q.x * q.x + q.y * q.y + q.z * q.z);
  T k;
  if (n < T(1e-6)) {
    k = T(2) / q.w;  // 2*atan2(n,w)/n -> 2/w as n -> 0
  } else {
    k = T(2) * atan2(n, q.w) / n;
  }
  aa[0] = q.x * k; aa[1] = q.y * k; aa[2] = q.z * k;
}

// Gram-Schmidt on the two stored columns; norms floored at 1e-12 (as torch's F.normalize), so
// a degenerate input gives zero columns instead of NaN.
template <typename T>
HMR_HD Mat3<T> rot6d_to_mat(const T* d) {
  T a1[3] = {d[0], d[1], d[2]}, a2[3] = {d[3], d[4], d[5]};
  T n1 = sqrt(a1[0] * a1[0] + a1[1] * a1[1] + a1[2] * a1[2]);
  n1 = n1 > T(1e-12) ? n1 : T(1e-12);
  T b1[3] = {a1[0] / n1, a1[1] / n1, a1[2] / n1};
  T dp = b1[0] * a2[0] + b1[1] * a2[1] + b1[2] * a2[2];
  T u[3] = {a2[0] - dp * b1[0], a2[1] - dp * b1[1], a2[2] - dp * b1[2]};
  T n2 = sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2]);
  n2 = n2 > T(1e-12) ? n2 : T(1e-12);
  T b2[3] = {u[0] / n2, u[1] / n2, u[2] / n2};
  T b3[3] = {b1[1] * b2[2] - b1[2] * b2[1], b1[2] * b2[0] - b1[0] * b2[2],
             b1[0] * b2[1] - b1[1] * b2[0]};
  Mat3<T> R;
  for (int r = 0; r < 3; ++r) { R(r, 0) = b1[r]; R(r, 1) = b2[r]; R(r, 2) = b3[r]; }
  return R;
}

template <typename T>
HMR_HD T quat_dot(const Quat<T>& a, const Quat<T>& b) {
  return a.w * b.w + a.x * b.x + a.y * b.y + a.z * b.z;
}

// Short-arc slerp; normalised lerp when the quaternions are nearly parallel (sin θ ~ 0).
template <typename T>
HMR_HD Quat<T> slerp(const Quat<T>& q0, Quat<T> q1, T t) {
  T d = quat_dot(q0, q1);
  if (d < T(0)) { q1.w = -q1.w; q1.x = -q1.x; q1.y = -q1.y; q1.z = -q1.z; d = -d; }
  T a, b;
  if (d > T(0.9995)) {
    a = T(1) - t;
    b = t;
  } else {
    const T th = acos(d);
    const T s = sin(th);
    a = sin((T(1) - t) * th) / s;
    b = sin(t * th) / s;
  }
  Quat<T> r{a * q0.w + b * q1.w, a * q0.x + b * q1.x, a * q0.y + b * q1.y, a * q0.z + b * q1.z};
  T n = sqrt(quat_dot(r, r));
  if (r.w < T(0)) n = -n;
  r.w /= n; r.x /= n; r.y /= n; r.z /= n;
  return r;
}

// Slerp between rotation matrices with exact endpoints: t <= 0 returns R0 and t >= 1 returns R1
// bit for bit, so kinematic slerp with w in {0, 1} reproduces one branch exactly. NaN t
// propagates (neither comparison holds) as NaN entries.
template <typename T>
HMR_HD Mat3<T> slerp_mat(const Mat3<T>& R0, const Mat3<T>& R1, T t) {
  if (t <= T(0)) return R0;
  if (t >= T(1)) return R1;
  return quat_to_mat(slerp(mat_to_quat(R0), mat_to_quat(R1), t));
}

// Element-wise conversions, numbered for the bindings. Input/output element sizes:
// aa 3, matrix 9, quaternion 4, 6D 6.
enum RotationConversion : int {
  kAxisAngleToMatrix = 0,
  kMatrixToAxisAngle = 1,
  kMatrixToQuaternion = 2,
  kQuaternionToMatrix = 3,
  kAxisAngleToQuaternion = 4,
  kQuaternionToAxisAngle = 5,
  kRot6dToMatrix = 6,
  kMatrixToRot6d = 7,
};

HMR_HD int rotation_in_size(int kind) {
  const int sizes[8] = {3, 9, 9, 4, 3, 4, 6, 9};
  return sizes[kind];
}

HMR_HD int rotation_out_size(int kind) {
  const int sizes[8] = {9, 3, 4, 9, 4, 3, 9, 6};
  return sizes[kind];
}

template <typename T>
HMR_HD void store_quat(const Quat<T>& q, T* p) {
  p[0] = q.w; p[1] = q.x; p[2] = q.y; p[3] = q.z;
}

template <typename T>
HMR_HD Quat<T> load_quat(const T* p) {
  Quat<T> q{p[0], p[1], p[2], p[3]};
  return q;
}

template <typename T>
HMR_HD void convert_rotation_one(int kind, const T* in, T* out) {
  switch (kind) {
    case kAxisAngleToMatrix: store_mat3(quat_to_mat(aa_to_quat(in[0], in[1], in[2])), out); break;
    case kMatrixToAxisAngle: quat_to_aa(mat_to_quat(load_mat3(in)), out); break;
    case kMatrixToQuaternion: store_quat(mat_to_quat(load_mat3(in)), out); break;
    case kQuaternionToMatrix: store_mat3(quat_to_mat(load_quat(in)), out); break;
    case kAxisAngleToQuaternion: {
      Quat<T> q = aa_to_quat(in[0], in[1], in[2]);
      if (q.w < T(0)) { q.w = -q.w; q.x = -q.x; q.y = -q.y; q.z = -q.z; }
      store_quat(q, out);
      break;
    }
    case kQuaternionToAxisAngle: quat_to_aa(load_quat(in), out); break;
    case kRot6dToMatrix: store_mat3(rot6d_to_mat(in), out); break;
    case kMatrixToRot6d:
      out[0] = in[0]; out[1] = in[3]; out[2] = in[6];
      out[3] = in[1]; out[4] = in[4]; out[5] = in[7];
      break;
    default: break;
  }
}

}  // namespace hmr
