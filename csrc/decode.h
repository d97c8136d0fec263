// Kernel family 2: heatmaps -> keypoints (x, y, score) in frame pixels, with the optional flip-test
// merge. The numpy reference is vitpose_trt.decode.postprocess(impl="numpy"); this reproduces its
// float32/float64 rounding step by step (x, y to ~1e-6 px on well-formed peaks, score exactly).
//
// Per heatmap (n, k), H x W:
// 1. Merge (flip test only): M[y][x] = (hm[k][y][x] + F[y][x]) * 0.5f with
//      udp:     F[y][x] = flipped[flip_index[k]][y][W-1-x]
//      classic: F[y][x] = flipped[flip_index[k]][y][W-1-max(x-1, 0)]   (shifted right one pixel)
// 2. argmax over M, row-major, first maximum wins ties; a NaN anywhere wins (the first NaN), as
//    numpy.argmax; score = M at the argmax (so NaN when any NaN). score > 0 is required for a
//    location: otherwise (also NaN) the location is (-1, -1) and nothing is refined.
// 3. classic: inside 1 < px < W-1, 1 < py < H-1, px += 0.25*sign(M[py][px+1] - M[py][px-1]),
//    py likewise; frame x = px * w/W + cx - w/2.
//    udp (DARK-UDP): B = cv2.GaussianBlur(M, 11x11, sigma 2, BORDER_REFLECT_101) at the 7 points
//    (px,py), (px±1,py), (px,py±1), (px+1,py+1), (px-1,py-1), each first clamped into the map;
//    L = log(clip(B, 0.001, 50)); one Newton step with the finite-difference gradient and Hessian
//    (+ FLT_EPSILON on the diagonal); frame x = px * w/(W-1) + cx - w/2.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace vitpose_trt {

enum class DecodeMode { kUdp = 0, kClassic = 1 };

// Largest h * w: element indices, and decode_kernel's lane index which runs up to h * w + 31, stay
// inside int32.
constexpr int64_t kMaxMapSize = 2147483647LL - 32;

struct DecodeArgs {
  const void* heatmaps;       // (n, k, h, w) C-contiguous, float32 or float16 bits
  const void* flipped;        // same shape and type, or nullptr (no flip test)
  FloatType type;
  const int32_t* flip_index;  // (k,) values in [0, k); only with `flipped`
  const float* transforms;    // (n, 4) cx, cy, w, h
  float* out;                 // (n, k, 3) x, y, score
  int64_t n;
  int k, h, w;                // h, w >= 2 and h * w <= kMaxMapSize (checked by the binding)
  DecodeMode mode;
  int threads;                // decode_cpu only: the calling thread plus up to threads - 1 helpers
};

// decode_cpu blocks until done (the n*k heatmaps in chunks over `threads` threads, parallel.h).
// decode_cuda enqueues one kernel for all n*k heatmaps on `stream` (the caller's; never implied)
// of `device` and returns at once.
void decode_cpu(const DecodeArgs& args);
void decode_cuda(const DecodeArgs& args, std::uintptr_t stream, int device);

// ---- shared by decode_cpu() and decode_kernel ---------------------------------------------------

// The (merged) heatmap of one keypoint, read on the fly.
template <typename Storage>
struct MapView {
  const Storage* hm;       // this keypoint's map
  const Storage* flipped;  // the flipped crop's map of the mirrored keypoint, or nullptr
  int h, w;
  bool shift;  // classic flip test: the flipped-back map moves one pixel right

  VT_HD float at(int y, int x) const {
    const int64_t row = static_cast<int64_t>(y) * w;
    const float v = load_as_float(hm, row + x);
    if (flipped == nullptr) return v;
    const int xs = shift ? (x > 0 ? x - 1 : 0) : x;
    const float f = load_as_float(flipped, row + (w - 1 - xs));
    return fmul(fadd(v, f), 0.5f);  // numpy: (heatmaps + back) * float32(0.5)
  }
};

// Whether (v, i) replaces the running argmax (best, bi): numpy.argmax order (first NaN, else the
// first of the largest). The identity element is (-inf, INT64_MAX).
VT_HD bool argmax_better(float v, int64_t i, float best, int64_t bi) {
  const bool v_nan = v != v, b_nan = best != best;
  if (v_nan || b_nan) return v_nan && (!b_nan || i < bi);
  return v > best || (v == best && i < bi);
}

// cv2.getGaussianKernel(11, 2.0) (sigma = 0.3 * ((11 - 1) / 2 - 1) + 0.8 = 2), rounded to float32
// as OpenCV does for float images; weight of tap offset d in [-5, 5].
VT_HD float dark_weight(int d) {
  switch (d < 0 ? -d : d) {
    case 0: return 0.2005654126405716f;
    case 1: return 0.17699836194515228f;
    case 2: return 0.12164907157421112f;
    case 3: return 0.06511405855417252f;
    case 4: return 0.027143577113747597f;
    default: return 0.00881222914904356f;
  }
}
constexpr int kDarkRadius = 5;       // 11 x 11 kernel
constexpr int kDarkPoints = 7;       // blurred values the Newton step needs
constexpr int kDarkRows = 2 * kDarkRadius + 1;

// Offsets of the 7 points: centre, x+1, x-1, y+1, y-1, (x+1, y+1), (x-1, y-1).
VT_HD void dark_point_offset(int p, int* dx, int* dy) {
  switch (p) {  // a switch, not a table: no local-memory array on the GPU
    case 1: *dx = 1; *dy = 0; break;
    case 2: *dx = -1; *dy = 0; break;
    case 3: *dx = 0; *dy = 1; break;
    case 4: *dx = 0; *dy = -1; break;
    case 5: *dx = 1; *dy = 1; break;
    case 6: *dx = -1; *dy = -1; break;
    default: *dx = 0; *dy = 0; break;
  }
}

// OpenCV's BORDER_REFLECT_101 (borderInterpolate), repeated for maps smaller than the kernel.
VT_HD int reflect101(int p, int n) {
  if (n == 1) return 0;
  while (p < 0 || p >= n) p = p < 0 ? -p : 2 * n - 2 - p;
  return p;
}

VT_HD int clamp_index(int p, int n) { return p < 0 ? 0 : (p >= n ? n - 1 : p); }

// The centre (cx, cy) of blur point p for the peak (px, py): edge-clamped like mmpose's padding.
VT_HD void dark_point(int p, int px, int py, int h, int w, int* cx, int* cy) {
  int dx, dy;
  dark_point_offset(p, &dx, &dy);
  *cx = clamp_index(px + dx, w);
  *cy = clamp_index(py + dy, h);
}

// The blur reproduces cv2.GaussianBlur's float32 arithmetic (measured bit-exact against cv2 4.x/5.0
// on x86 with AVX2 for map widths that are a multiple of 8, e.g. 48 and 72; other widths differ by
// an ulp in the columns OpenCV computes in its scalar tail): a horizontal pass that accumulates the
// 11 taps left to right with FMA, then a vertical pass that adds the symmetric pairs first.
// Bit-exactness matters because the Newton step divides by a curvature that can be tiny.

// Horizontal pass: row `r` (offset r - 5 from cy) at column cx.
template <typename Storage>
VT_HD float dark_row_sum(const MapView<Storage>& m, int cx, int cy, int r) {
  const int y = reflect101(cy + r - kDarkRadius, m.h);
  float s = fmul(dark_weight(-kDarkRadius), m.at(y, reflect101(cx - kDarkRadius, m.w)));
  for (int j = -kDarkRadius + 1; j <= kDarkRadius; ++j) {
    s = fma_f32(dark_weight(j), m.at(y, reflect101(cx + j, m.w)), s);
  }
  return s;
}

// Vertical pass over the 11 row sums (rows[5] is the centre), then mmpose's clip and log.
VT_HD float dark_log_blur(const float rows[kDarkRows]) {
  float b = fmul(dark_weight(0), rows[kDarkRadius]);
  for (int i = 1; i <= kDarkRadius; ++i) {
    b = fma_f32(dark_weight(i), fadd(rows[kDarkRadius - i], rows[kDarkRadius + i]), b);
  }
  b = b < 0.001f ? 0.001f : (b > 50.0f ? 50.0f : b);  // np.clip; NaN stays NaN
  // log in double, rounded once to float: correctly rounded on both CPU and GPU in practice
  // (numpy's own SIMD float32 log is itself off by an ulp for ~10% of inputs).
  return static_cast<float>(log(static_cast<double>(b)));
}

// One Newton step from the 7 log-blur values (order of dark_point_offset), with numpy's rounding:
// derivatives in float32 evaluated left to right, Hessian + eps*I inverted in float64, the step
// rounded to float32 and subtracted in float32. A singular Hessian leaves the peak where it is
// (numpy would raise LinAlgError there).
VT_HD void dark_newton_step(const float L[kDarkPoints], float* px, float* py) {
  const float c = L[0], xp = L[1], xm = L[2], yp = L[3], ym = L[4], pp = L[5], mm = L[6];
  const float dx = fmul(0.5f, fsub(xp, xm));
  const float dy = fmul(0.5f, fsub(yp, ym));
  const float dxx = fadd(fsub(xp, fmul(2.0f, c)), xm);
  const float dyy = fadd(fsub(yp, fmul(2.0f, c)), ym);
  const float dxy = fmul(0.5f, fadd(fsub(fsub(fadd(fadd(fsub(fsub(pp, xp), yp), c), c), xm), ym), mm));
  constexpr double kEps = 1.1920928955078125e-07;  // np.finfo(np.float32).eps
  const double a = dadd(static_cast<double>(dxx), kEps);
  const double d = dadd(static_cast<double>(dyy), kEps);
  const double b = static_cast<double>(dxy);
  const double det = dsub(dmul(a, d), dmul(b, b));
  if (det == 0.0) return;
  // inv = [[d, -b], [-b, a]] / det; step = inv @ [dx, dy]
  const double i00 = ddiv(d, det), i01 = ddiv(-b, det), i11 = ddiv(a, det);
  const double sx = dadd(dmul(i00, dx), dmul(i01, dy));
  const double sy = dadd(dmul(i01, dx), dmul(i11, dy));
  *px = fsub(*px, static_cast<float>(sx));
  *py = fsub(*py, static_cast<float>(sy));
}

// numpy.sign in float32 (NaN stays NaN).
VT_HD float sign_f(float d) { return d > 0.0f ? 1.0f : (d < 0.0f ? -1.0f : (d == 0.0f ? 0.0f : d)); }

// Classic: a quarter pixel toward the larger neighbour, for interior peaks only.
template <typename Storage>
VT_HD void classic_offset(const MapView<Storage>& m, int ix, int iy, float* px, float* py) {
  if (1 < ix && ix < m.w - 1 && 1 < iy && iy < m.h - 1) {
    const float gx = fsub(m.at(iy, ix + 1), m.at(iy, ix - 1));
    const float gy = fsub(m.at(iy + 1, ix), m.at(iy - 1, ix));
    *px = fadd(*px, fmul(sign_f(gx), 0.25f));
    *py = fadd(*py, fmul(sign_f(gy), 0.25f));
  }
}

// Heatmap coordinates -> frame pixels (geometry.heatmap_to_frame), in float64 like numpy, then
// float32 output.
VT_HD void write_keypoint(const float* t, DecodeMode mode, int h, int w, float px, float py, float score,
                          float* out) {
  const double cx = t[0], cy = t[1], bw = t[2], bh = t[3];
  const double div_x = mode == DecodeMode::kUdp ? w - 1.0 : static_cast<double>(w);
  const double div_y = mode == DecodeMode::kUdp ? h - 1.0 : static_cast<double>(h);
  const double x = dsub(dadd(dmul(static_cast<double>(px), ddiv(bw, div_x)), cx), dmul(bw, 0.5));
  const double y = dsub(dadd(dmul(static_cast<double>(py), ddiv(bh, div_y)), cy), dmul(bh, 0.5));
  out[0] = static_cast<float>(x);
  out[1] = static_cast<float>(y);
  out[2] = score;
}

}  // namespace vitpose_trt
