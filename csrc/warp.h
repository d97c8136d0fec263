// Kernel family 1: batched crop = affine warp (bilinear, zero border) + BGR->RGB + /255 +
// ImageNet normalization, with the horizontally flipped copies written in the same pass.
//
//   out[i, c, y, x]     = (v_i(x, y, 2 - c) / 255 - mean[c]) / std[c]      i < N, c = R, G, B
//   out[N + i, c, y, x] = out[i, c, y, w - 1 - x]                            only when flip
//
// v_i(x, y, ch) is cv2.warpAffine(frame, M_i, (w, h), INTER_LINEAR, BORDER_CONSTANT, 0) before its
// final rounding to uint8, for crop pixel (x, y) and frame channel ch (BGR). inv[i] (crop pixel ->
// frame pixel) is the matrix warpAffine computes internally from M_i. Two sub-pixel models, since
// OpenCV changed its arithmetic between major versions (both measured against the real cv2):
//
//   kFixed (OpenCV <= 4.12): coordinates in 1/1024 px fixed point, quantized to 1/32 px:
//       X = (saturate_cast<int>((inv[1]*y + inv[2]) * 1024) + 16 + saturate_cast<int>(inv[0]*x*1024)) >> 5
//       (Y likewise with inv[3..5]); source pixel X >> 5 (floor), fraction (X & 31) / 32.
//       saturate_cast<int>(double) rounds half to even (cvRound).
//   kFloat (OpenCV >= 5.0): continuous coordinates sx = inv[0]*x + inv[1]*y + inv[2] (OpenCV uses
//       float32, we use double: the difference is < 1e-3 px, far below one intensity level),
//       source pixel floor(sx), fraction sx - floor(sx).
//
// Then bilinear interpolation of the 4 neighbours, each neighbour outside the frame being 0.
// OpenCV rounds v to uint8 (4.x with 15-bit integer weights); we keep v in float, so the result is
// within 0.5 intensity levels of cv2's crop, plus OpenCV's own quantization: 4.x weights (< 0.02),
// 5.0's float32 coordinates (measured: 0.51 max on real boxes, 0.58 on a 4000x3000 noise frame).
// A non-finite or astronomically large coordinate reads as outside the frame (all zeros).
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace vitpose_trt {

enum class WarpCoords { kFixed = 0, kFloat = 1 };

// Everything a warp needs; pointers are host or device memory depending on the entry point.
struct WarpArgs {
  const uint8_t* frame;  // (frame_h, frame_w, 3) BGR, pixel stride 3 bytes, row stride below
  int64_t frame_row_stride;  // bytes between rows (>= frame_w * 3)
  int frame_h, frame_w;
  const double* inv;  // (n, 2, 3) crop pixel -> frame pixel
  int64_t n;          // boxes
  void* out;          // (n or 2n, 3, out_h, out_w) C-contiguous float32 or float16 bits
  FloatType out_type;
  int out_h, out_w;
  bool flip;
  WarpCoords coords;
};

// Host entry points. warp_cpu blocks until done (OpenMP over boxes x rows where available).
// warp_cuda enqueues one kernel for all boxes on `stream` (a cudaStream_t; 0 = legacy default) of
// CUDA device `device` (where every pointer lives) and returns without synchronizing.
void warp_cpu(const WarpArgs& args);
void warp_cuda(const WarpArgs& args, std::uintptr_t stream, int device);

// ---- per-pixel arithmetic shared by warp_cpu() and warp_kernel ---------------------------------

// The integer source pixel (x0, y0) at the top-left of the bilinear footprint and the fractions.
struct SourcePoint {
  int64_t x0, y0;
  float ax, ay;
  bool valid;  // false: the coordinate is not finite or far outside any frame -> all zeros
};

// cvRound / saturate_cast<int>(double): nearest, ties to even, clamped to the int range.
VT_HD int64_t round_saturate_int(double v) {
  if (!(v > -2147483648.0)) return v != v ? 0 : -2147483648LL;  // NaN -> 0 (never reached: checked)
  if (!(v < 2147483647.0)) return 2147483647LL;
#ifdef __CUDA_ARCH__
  return static_cast<int64_t>(__double2ll_rn(v));
#else
  return static_cast<int64_t>(std::lrint(v));  // default rounding mode: to nearest even (cvtsd2si)
#endif
}

// floor for |v| < 2^62 without a libm call (x86-64's baseline has no SSE4.1 roundsd).
VT_HD int64_t floor_to_int(double v) {
  const int64_t t = static_cast<int64_t>(v);  // truncates toward zero
  return t - (static_cast<double>(t) > v ? 1 : 0);
}

// OpenCV 4.x: 1/1024 px accumulation, then 1/32 px. `row` is inv[1]*y + inv[2] (or inv[4]*y +
// inv[5]); `col` is inv[0]*x (or inv[3]*x), both formed with dmul/dadd in the same order as OpenCV.
VT_HD void fixed_point_coord(double row, double col, int64_t* pixel, float* frac) {
  constexpr double kAbScale = 1024.0;  // AB_BITS = 10
  constexpr int kShift = 10 - 5;       // AB_BITS - INTER_BITS
  constexpr int64_t kRoundDelta = 16;  // AB_SCALE / INTER_TAB_SIZE / 2
  const int64_t x0 = round_saturate_int(dmul(row, kAbScale)) + kRoundDelta;
  const int64_t dx = round_saturate_int(dmul(col, kAbScale));
  const int64_t q = (x0 + dx) >> kShift;  // arithmetic shift: floors negatives, as OpenCV
  *pixel = q >> 5;                        // INTER_BITS = 5
  *frac = static_cast<float>(q & 31) * (1.0f / 32.0f);
}

// Source coordinate of crop pixel (x, y) for one box. Doubles: frame coordinates up to ~10^4 px
// need ~30 bits to keep 1/1024 px (fixed model) exact; it is 4 products per pixel. The explicit
// dmul/dadd keep host and device bit-identical (no FMA contraction).
VT_HD SourcePoint source_point(const double* m, int x, int y, WarpCoords coords) {
  SourcePoint p;
  const double rx = dadd(dmul(m[1], static_cast<double>(y)), m[2]);
  const double ry = dadd(dmul(m[4], static_cast<double>(y)), m[5]);
  const double cx = dmul(m[0], static_cast<double>(x));
  const double cy = dmul(m[3], static_cast<double>(x));
  if (coords == WarpCoords::kFixed) {
    // OpenCV adds the row and column parts as integers, so each must be finite on its own.
    constexpr double kLimit = 1.0e6;  // px; beyond, OpenCV's int accumulation itself overflows
    p.valid = ::fabs(rx) < kLimit && ::fabs(ry) < kLimit && ::fabs(cx) < kLimit && ::fabs(cy) < kLimit;
    if (!p.valid) return p;
    fixed_point_coord(rx, cx, &p.x0, &p.ax);
    fixed_point_coord(ry, cy, &p.y0, &p.ay);
  } else {
    const double sx = dadd(cx, rx);
    const double sy = dadd(cy, ry);
    p.valid = ::fabs(sx) < 1.0e9 && ::fabs(sy) < 1.0e9;  // also false for NaN
    if (!p.valid) return p;
    p.x0 = floor_to_int(sx);
    p.y0 = floor_to_int(sy);
    p.ax = static_cast<float>(dsub(sx, static_cast<double>(p.x0)));  // same rounding on CPU and GPU
    p.ay = static_cast<float>(dsub(sy, static_cast<double>(p.y0)));
  }
  return p;
}

// Bilinear blend of the four neighbours (BGR each), top-left (p.x0, p.y0). A neighbour outside
// the frame contributes 0 (BORDER_CONSTANT with value 0).
VT_HD void bilinear_bgr(const uint8_t* frame, int64_t row_stride, int frame_h, int frame_w, const SourcePoint& p,
                        float bgr[3]) {
  bgr[0] = bgr[1] = bgr[2] = 0.0f;
  if (!p.valid) return;
  float px[4][3];  // 00, 01, 10, 11
  const bool inside = p.x0 >= 0 && p.y0 >= 0 && p.x0 + 1 < frame_w && p.y0 + 1 < frame_h;
  for (int j = 0; j < 4; ++j) {
    const int64_t xx = p.x0 + (j & 1), yy = p.y0 + (j >> 1);
    if (inside || (xx >= 0 && yy >= 0 && xx < frame_w && yy < frame_h)) {
      const uint8_t* s = frame + yy * row_stride + xx * 3;
      px[j][0] = s[0];
      px[j][1] = s[1];
      px[j][2] = s[2];
    } else {
      px[j][0] = px[j][1] = px[j][2] = 0.0f;
    }
  }
  for (int c = 0; c < 3; ++c) {
    const float top = px[0][c] + p.ax * (px[1][c] - px[0][c]);
    const float bot = px[2][c] + p.ax * (px[3][c] - px[2][c]);
    bgr[c] = top + p.ay * (bot - top);
  }
}

// v in [0, 255] (unrounded) -> normalized value of RGB channel c: (v / 255 - mean) / std, folded
// into one multiply-add (differs from the two-step formula by ~1 ulp).
VT_HD float normalize_level(float v, int c) {
  const float mean = c == 0 ? 0.485f : (c == 1 ? 0.456f : 0.406f);
  const float sd = c == 0 ? 0.229f : (c == 1 ? 0.224f : 0.225f);
  return v * (1.0f / (255.0f * sd)) + (-mean / sd);
}

}  // namespace vitpose_trt
