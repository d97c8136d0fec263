// Kernel family 1: batched crop = affine warp (bilinear, zero border) + BGR->RGB + /255 +
// ImageNet normalization, with the horizontally flipped copies written in the same pass.
//
//   out[i, c, y, x]     = (float(v_i(x, y, 2 - c)) / 255 - mean[c]) / std[c]   i < N, c = R, G, B
//   out[N + i, c, y, x] = out[i, c, y, w - 1 - x]                               only when flip
//
// The same warp makes a person detector's input (a letterbox is an affine warp: a scale and a
// shift), with two options (WarpArgs::normalize, WarpArgs::letterbox):
//   normalize   how a level becomes an output value, each detector family's (vitpose_trt/detect.py):
//                 kImageNet  RGB, (level / 255 - mean[c]) / std[c]   the pose crop (above)
//                 kUnit      RGB, level / 255                        Ultralytics YOLO
//                 kRaw       BGR, level                              YOLOX (mmdet, rtmlib)
//                 kMeanStd   BGR, (level - mean[c]) / std[c]          RTMDet (mmdet's BGR mean/std)
//               each in float32 with one IEEE rounding per operation, as numpy computes it;
//   letterbox   output pixels outside the image region [x0, x1) x [y0, y1) are the level `pad`
//               (114), and inside it a bilinear neighbour outside the frame repeats the frame's edge
//               (BORDER_REPLICATE, as cv2.resize reads it) instead of reading 0. With OpenCV 4.x,
//               the region equals cv2.warpAffine(..., BORDER_REPLICATE) bit for bit; against the
//               families' own cv2.resize it differs by its sub-pixel arithmetic (1/32 px here, 11-bit
//               weights there), a few levels at sharp edges (tests/test_letterbox.py states the bounds).
//
// v_i(x, y, ch) is the uint8 that cv2.warpAffine(frame, M_i, (w, h), INTER_LINEAR,
// BORDER_CONSTANT, 0) writes at crop pixel (x, y), frame channel ch (BGR), and the normalization
// is float32 with one IEEE rounding per operation, as vitpose_trt.crop.normalize() in numpy: with
// OpenCV 4.x the crops are bit-identical to preprocess(impl="numpy") (tested on every real
// detector box and on odd inputs). inv[i] (crop pixel -> frame pixel) is the matrix warpAffine
// computes internally from M_i. Two sub-pixel models, since OpenCV changed its arithmetic between
// major versions:
//
//   kFixed (OpenCV 4.x, what the official ViTPose results were produced with): coordinates in
//       1/1024 px fixed point, quantized to 1/32 px (warpAffine's WarpAffineInvoker):
//         X = (saturate_cast<int>((inv[1]*y + inv[2]) * 1024) + 16 + saturate_cast<int>(inv[0]*x*1024)) >> 5
//       (Y likewise with inv[3..5]); source pixel X >> 5 (floor), fraction index fx = X & 31.
//       saturate_cast<int>(double) rounds half to even (cvRound). Then remapBilinear's integer
//       interpolation: the 4 neighbours times 15-bit weights from initInterTab2D's 32x32 table,
//         w = 32 * ((32-fy)(32-fx), (32-fy)fx, fy(32-fx), fy fx)   (sum 2^15 = INTER_REMAP_COEF_SCALE)
//       except fx = fy = 0, where saturate_cast<short>(32768) = 32767 and the table's sum
//       adjustment puts the missing 1 on the bottom-right weight: (32767, 0, 0, 1). A neighbour
//       outside the frame reads 0 (BORDER_CONSTANT; a footprint wholly outside gives 0, the same
//       value), and v = (sum + 2^14) >> 15 (FixedPtCast), which is always <= 255.
//   kFloat (OpenCV >= 5.0): continuous coordinates sx = inv[0]*x + inv[1]*y + inv[2] (OpenCV uses
//       float32, we use double), source pixel floor(sx), fraction sx - floor(sx), float32 bilinear
//       blend rounded to the nearest uint8 (ties to even). Not bit-exact: OpenCV 5's float32
//       coordinates differ from ours by < 1e-3 px, which moves a rounded value by at most 1 level
//       where the blend lands next to a half level (measured before rounding: 0.51 level max on
//       real boxes); not re-measured here (no OpenCV 5 wheel is available to the tests).
//
// A non-finite or astronomically large coordinate reads as outside the frame (all zeros).
//
// The frame is any (H, W, 3) uint8 array: row, pixel and channel strides in bytes may be any
// value, negative or zero (mirrored, flipped, transposed, BGR->RGB views, Fortran order,
// broadcast), and every output equals the one of np.ascontiguousarray(frame).
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace vitpose_trt {

enum class WarpCoords { kFixed = 0, kFloat = 1 };

// The source image: element (y, x, ch) is at data + y * row_stride + x * pixel_stride +
// ch * channel_stride (bytes; any sign, zero included). Host or device memory.
struct FrameView {
  const uint8_t* data;
  int64_t row_stride, pixel_stride, channel_stride;
  int h, w;  // >= 1

  VT_HD const uint8_t* pixel(int64_t x, int64_t y) const { return data + y * row_stride + x * pixel_stride; }
};

// How a level becomes an output value (see the top of this file).
enum class Normalize { kImageNet = 0, kUnit = 1, kRaw = 2, kMeanStd = 3 };

// A letterbox's image region in output pixels and the level everything else gets; off: the crop
// (no region, neighbours outside the frame read 0).
struct Letterbox {
  bool on;
  int x0, y0, x1, y1;  // 0 <= x0 <= x1 <= out_w, 0 <= y0 <= y1 <= out_h
  int pad;             // 0..255
};

// Everything a warp needs; pointers are host or device memory depending on the entry point.
struct WarpArgs {
  FrameView frame;    // (h, w, 3) BGR
  const double* inv;  // (n, 2, 3) crop pixel -> frame pixel
  int64_t n;          // boxes
  void* out;          // (n or 2n, 3, out_h, out_w) C-contiguous float32 or float16 bits
  FloatType out_type;
  int out_h, out_w;
  bool flip;
  WarpCoords coords;
  Normalize normalize;  // kImageNet for the pose crop
  Letterbox letterbox;  // off for the pose crop; never with flip
  int threads;        // warp_cpu only: the calling thread plus up to threads - 1 helpers (parallel.h)
};

// Host entry points. warp_cpu blocks until done. warp_cuda enqueues one kernel for all boxes on
// `stream` (a cudaStream_t, which the caller always names) of CUDA device `device` (where every
// pointer lives) and returns without synchronizing.
void warp_cpu(const WarpArgs& args);
void warp_cuda(const WarpArgs& args, std::uintptr_t stream, int device);

// ---- per-pixel arithmetic shared by warp_cpu() and warp_kernel ---------------------------------

// Coordinates beyond these read as outside the frame (all zeros), in every code path (scalar, SSE2,
// CUDA). kFixed: OpenCV adds the row and column parts as ints, so each must stay well inside int32
// after scaling by 1024. kFloat: far outside any frame, and floor() still fits int64.
constexpr double kFixedLimit = 1.0e6;  // px
constexpr double kFloatLimit = 1.0e9;  // px

// The integer source pixel (x0, y0) at the top-left of the bilinear footprint and the fractions:
// fx, fy in 1/32 px (kFixed) or ax, ay in [0, 1) (kFloat).
struct SourcePoint {
  int64_t x0, y0;
  int fx, fy;
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
VT_HD void fixed_point_coord(double row, double col, int64_t* pixel, int* frac) {
  constexpr double kAbScale = 1024.0;  // AB_BITS = 10
  constexpr int kShift = 10 - 5;       // AB_BITS - INTER_BITS
  constexpr int64_t kRoundDelta = 16;  // AB_SCALE / INTER_TAB_SIZE / 2
  const int64_t x0 = round_saturate_int(dmul(row, kAbScale)) + kRoundDelta;
  const int64_t dx = round_saturate_int(dmul(col, kAbScale));
  const int64_t q = (x0 + dx) >> kShift;  // arithmetic shift: floors negatives, as OpenCV
  *pixel = q >> 5;                        // INTER_BITS = 5
  *frac = static_cast<int>(q & 31);
}

// Source coordinate of crop pixel (x, y) for one box. Doubles: frame coordinates up to ~10^4 px
// need ~30 bits to keep 1/1024 px (fixed model) exact; it is 4 products per pixel. The explicit
// dmul/dadd keep host and device bit-identical (no FMA contraction).
VT_HD SourcePoint source_point(const double* m, int x, int y, WarpCoords coords) {
  SourcePoint p{0, 0, 0, 0, 0.0f, 0.0f, false};
  const double rx = dadd(dmul(m[1], static_cast<double>(y)), m[2]);
  const double ry = dadd(dmul(m[4], static_cast<double>(y)), m[5]);
  const double cx = dmul(m[0], static_cast<double>(x));
  const double cy = dmul(m[3], static_cast<double>(x));
  if (coords == WarpCoords::kFixed) {
    // OpenCV adds the row and column parts as integers, so each must be finite on its own.
    p.valid = ::fabs(rx) < kFixedLimit && ::fabs(ry) < kFixedLimit && ::fabs(cx) < kFixedLimit &&
              ::fabs(cy) < kFixedLimit;
    if (!p.valid) return p;
    fixed_point_coord(rx, cx, &p.x0, &p.fx);
    fixed_point_coord(ry, cy, &p.y0, &p.fy);
  } else {
    const double sx = dadd(cx, rx);
    const double sy = dadd(cy, ry);
    p.valid = ::fabs(sx) < kFloatLimit && ::fabs(sy) < kFloatLimit;  // also false for NaN
    if (!p.valid) return p;
    p.x0 = floor_to_int(sx);
    p.y0 = floor_to_int(sy);
    p.ax = static_cast<float>(dsub(sx, static_cast<double>(p.x0)));  // same rounding on CPU and GPU
    p.ay = static_cast<float>(dsub(sy, static_cast<double>(p.y0)));
  }
  return p;
}

// OpenCV 4.x's bilinear weights for the fractions (fx, fy) in 1/32 px: initInterTab2D's
// BilinearTab_i entry, top-left, top-right, bottom-left, bottom-right; they sum to 2^15.
VT_HD void fixed_weights(int fx, int fy, int32_t w[4]) {
  if (fx == 0 && fy == 0) {  // 32768 saturates to 32767; the sum adjustment adds 1 at (1, 1)
    w[0] = 32767;
    w[1] = w[2] = 0;
    w[3] = 1;
    return;
  }
  w[0] = 32 * (32 - fy) * (32 - fx);
  w[1] = 32 * (32 - fy) * fx;
  w[2] = 32 * fy * (32 - fx);
  w[3] = 32 * fy * fx;
}

// OpenCV 4.x's FixedPtCast<int, uchar, 15>: the weighted sum (<= 255 * 2^15) back to a level.
VT_HD int fixed_level(int32_t sum) { return (sum + (1 << 14)) >> 15; }

// OpenCV 5's rounding of a float blend to uint8: nearest, ties to even, saturated.
VT_HD int float_level(float v) {
  const int64_t r = round_saturate_int(static_cast<double>(v));  // exact widening, then rint
  return r < 0 ? 0 : (r > 255 ? 255 : static_cast<int>(r));
}

// The crop's uint8 value of frame channel ch (BGR) at source point p: warpAffine's bilinear
// interpolation with neighbours outside the frame reading 0 (BORDER_CONSTANT, value 0), or, with
// `replicate`, the nearest edge pixel (BORDER_REPLICATE: each neighbour's coordinates clamped into
// the frame). This is the one definition of a crop pixel; warp_cpu()'s SSE2 path computes the same
// integers where all four neighbours are inside.
VT_HD void bilinear_levels(const FrameView& f, const SourcePoint& p, WarpCoords coords, int bgr[3],
                           bool replicate = false) {
  bgr[0] = bgr[1] = bgr[2] = 0;
  if (!p.valid) return;
  const bool inside = p.x0 >= 0 && p.y0 >= 0 && p.x0 + 1 < f.w && p.y0 + 1 < f.h;
  const uint8_t* px[4] = {nullptr, nullptr, nullptr, nullptr};  // 00, 01, 10, 11; nullptr = outside
  bool any = false;
  for (int j = 0; j < 4; ++j) {
    int64_t xx = p.x0 + (j & 1), yy = p.y0 + (j >> 1);
    if (replicate) {
      xx = xx < 0 ? 0 : (xx >= f.w ? f.w - 1 : xx);
      yy = yy < 0 ? 0 : (yy >= f.h ? f.h - 1 : yy);
    }
    if (inside || (xx >= 0 && yy >= 0 && xx < f.w && yy < f.h)) {
      px[j] = f.pixel(xx, yy);
      any = true;
    }
  }
  if (!any) return;
  for (int c = 0; c < 3; ++c) {
    int32_t v[4];
    for (int j = 0; j < 4; ++j) v[j] = px[j] ? px[j][c * f.channel_stride] : 0;
    if (coords == WarpCoords::kFixed) {
      int32_t w[4];
      fixed_weights(p.fx, p.fy, w);
      bgr[c] = fixed_level(v[0] * w[0] + v[1] * w[1] + v[2] * w[2] + v[3] * w[3]);
    } else {
      const float p00 = static_cast<float>(v[0]), p01 = static_cast<float>(v[1]);
      const float p10 = static_cast<float>(v[2]), p11 = static_cast<float>(v[3]);
      const float top = fadd(p00, fmul(p.ax, fsub(p01, p00)));
      const float bot = fadd(p10, fmul(p.ax, fsub(p11, p10)));
      bgr[c] = float_level(fadd(top, fmul(p.ay, fsub(bot, top))));
    }
  }
}

// Level (0..255, as float: exact) -> the value of output channel c, as numpy computes it in
// float32, one IEEE rounding per operation (no reciprocal, no FMA): see Normalize above.
VT_HD float normalize_level(float level, int c, Normalize mode = Normalize::kImageNet) {
  switch (mode) {
    case Normalize::kUnit:
      return fdiv(level, 255.0f);
    case Normalize::kRaw:
      return level;
    case Normalize::kMeanStd: {  // BGR order: mmdet RTMDet's mean (103.53, 116.28, 123.675), std (57.375, 57.12, 58.395)
      const float mean = c == 0 ? 103.53f : (c == 1 ? 116.28f : 123.675f);
      const float sd = c == 0 ? 57.375f : (c == 1 ? 57.12f : 58.395f);
      return fdiv(fsub(level, mean), sd);
    }
    default: {  // ImageNet, RGB
      const float mean = c == 0 ? 0.485f : (c == 1 ? 0.456f : 0.406f);
      const float sd = c == 0 ? 0.229f : (c == 1 ? 0.224f : 0.225f);
      return fdiv(fsub(fdiv(level, 255.0f), mean), sd);
    }
  }
}

// The frame channel (BGR) that output channel c shows: RGB output for kImageNet / kUnit, BGR else.
VT_HD int source_channel(int c, Normalize mode) {
  return mode == Normalize::kRaw || mode == Normalize::kMeanStd ? c : 2 - c;
}

// True when output pixel (x, y) lies outside a letterbox's image region (it shows the pad level).
VT_HD bool in_padding(const Letterbox& l, int x, int y) {
  return l.on && (x < l.x0 || x >= l.x1 || y < l.y0 || y >= l.y1);
}

// The BGR levels of output pixel (x, y) of a box: the pad level in a letterbox's padding, else the
// bilinear sample at p (replicating the frame's edge in a letterbox). warp_cpu()'s scalar path and
// warp_kernel both call this.
VT_HD void output_levels(const WarpArgs& a, int x, int y, const SourcePoint& p, int bgr[3]) {
  if (in_padding(a.letterbox, x, y)) {
    bgr[0] = bgr[1] = bgr[2] = a.letterbox.pad;
    return;
  }
  bilinear_levels(a.frame, p, a.coords, bgr, a.letterbox.on);
}

}  // namespace vitpose_trt
