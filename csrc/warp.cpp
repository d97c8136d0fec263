// warp_cpu(): the CPU reference (and fallback) of the batched crop. Contract in warp.h.
#include "warp.h"

#include <cstddef>

#if defined(__SSE2__)
#include <xmmintrin.h>
#include <emmintrin.h>
#endif

namespace vitpose_trt {
namespace {

// Scalar path for one pixel: normalized R, G, B.
inline void pixel_rgb(const WarpArgs& a, const SourcePoint& p, float rgb[3]) {
  float bgr[3];
  bilinear_bgr(a.frame, a.frame_row_stride, a.frame_h, a.frame_w, p, bgr);
  for (int c = 0; c < 3; ++c) rgb[c] = normalize_level(bgr[2 - c], c);  // c = 0 is R = frame channel 2
}

template <typename Storage>
inline void store_pixel(const WarpArgs& a, Storage* out, int64_t row, int64_t flipped_row, int64_t plane, int x,
                        const float rgb[3]) {
  for (int c = 0; c < 3; ++c) {
    store_from_float(out, row + c * plane + x, rgb[c]);
    if (a.flip) store_from_float(out, flipped_row + c * plane + (a.out_w - 1 - x), rgb[c]);
  }
}

#if defined(__SSE2__)
// Interior pixels (all 4 neighbours inside the frame, and the 8-byte loads below stay inside its
// buffer: a row below exists, or 2 spare bytes follow in the last row).
inline bool sse_safe(const WarpArgs& a, const SourcePoint& p) {
  return p.valid && p.x0 >= 0 && p.y0 >= 0 && p.x0 + 1 < a.frame_w && p.y0 + 1 < a.frame_h &&
         (p.y0 + 2 < a.frame_h || p.x0 + 3 <= a.frame_w);
}

// bilinear_bgr() for an interior pixel with its B, G, R in the lanes of one register: the same
// operations in the same order, lane by lane (SSE2 has no FMA; -ffp-contract=off keeps the scalar
// path unfused too), so both paths give identical bits. One 8-byte load per row covers both
// horizontal neighbours.
inline __m128 blend_bgr(const uint8_t* top_left, int64_t row_stride, float ax, float ay) {
  const __m128i zero = _mm_setzero_si128();
  const __m128i r0 = _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(top_left)), zero);
  const __m128i r1 = _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(top_left + row_stride)), zero);
  const __m128 p00 = _mm_cvtepi32_ps(_mm_unpacklo_epi16(r0, zero));                     // B G R (B)
  const __m128 p01 = _mm_cvtepi32_ps(_mm_unpacklo_epi16(_mm_srli_si128(r0, 6), zero));  // the next pixel
  const __m128 p10 = _mm_cvtepi32_ps(_mm_unpacklo_epi16(r1, zero));
  const __m128 p11 = _mm_cvtepi32_ps(_mm_unpacklo_epi16(_mm_srli_si128(r1, 6), zero));
  const __m128 vax = _mm_set1_ps(ax), vay = _mm_set1_ps(ay);
  const __m128 top = _mm_add_ps(p00, _mm_mul_ps(vax, _mm_sub_ps(p01, p00)));
  const __m128 bot = _mm_add_ps(p10, _mm_mul_ps(vax, _mm_sub_ps(p11, p10)));
  return _mm_add_ps(top, _mm_mul_ps(vay, _mm_sub_ps(bot, top)));
}

// normalize_level() on 4 pixels of one channel, same constants and operations.
inline __m128 normalize4(__m128 v, int c) {
  const float mean = c == 0 ? 0.485f : (c == 1 ? 0.456f : 0.406f);
  const float sd = c == 0 ? 0.229f : (c == 1 ? 0.224f : 0.225f);
  return _mm_add_ps(_mm_mul_ps(v, _mm_set1_ps(1.0f / (255.0f * sd))), _mm_set1_ps(-mean / sd));
}

// source_point() for pixels x..x+3 of row y, two doubles per register, bit-identical to it (the
// same IEEE operations lane by lane; coordinates of valid points fit int32). Returns false when
// any of the 4 points is invalid, leaving them to the scalar path.
inline bool source_points4(const double* m, int x, int y, WarpCoords coords, SourcePoint p[4]) {
  const double rx = dadd(dmul(m[1], static_cast<double>(y)), m[2]);
  const double ry = dadd(dmul(m[4], static_cast<double>(y)), m[5]);
  const __m128d xs[2] = {_mm_setr_pd(x, x + 1.0), _mm_setr_pd(x + 2.0, x + 3.0)};
  const __m128d abs_mask = _mm_castsi128_pd(_mm_set1_epi64x(0x7fffffffffffffffLL));
  alignas(16) int32_t ix[4], iy[4];
  alignas(16) float fx[4], fy[4];
  int ok = 1;
  for (int h = 0; h < 2; ++h) {
    const __m128d cx = _mm_mul_pd(_mm_set1_pd(m[0]), xs[h]);
    const __m128d cy = _mm_mul_pd(_mm_set1_pd(m[3]), xs[h]);
    __m128i px, py;
    __m128 ax, ay;
    if (coords == WarpCoords::kFloat) {
      const __m128d sx = _mm_add_pd(cx, _mm_set1_pd(rx)), sy = _mm_add_pd(cy, _mm_set1_pd(ry));
      const __m128d lim = _mm_set1_pd(1.0e9);
      ok &= _mm_movemask_pd(_mm_and_pd(_mm_cmplt_pd(_mm_and_pd(sx, abs_mask), lim),
                                       _mm_cmplt_pd(_mm_and_pd(sy, abs_mask), lim))) == 3;
      // floor: truncate, then one less where truncation went up (negative non-integers)
      const __m128d one = _mm_set1_pd(1.0);
      const __m128d tx = _mm_cvtepi32_pd(_mm_cvttpd_epi32(sx)), ty = _mm_cvtepi32_pd(_mm_cvttpd_epi32(sy));
      const __m128d flx = _mm_sub_pd(tx, _mm_and_pd(_mm_cmpgt_pd(tx, sx), one));
      const __m128d fly = _mm_sub_pd(ty, _mm_and_pd(_mm_cmpgt_pd(ty, sy), one));
      px = _mm_cvttpd_epi32(flx);
      py = _mm_cvttpd_epi32(fly);
      ax = _mm_cvtpd_ps(_mm_sub_pd(sx, flx));
      ay = _mm_cvtpd_ps(_mm_sub_pd(sy, fly));
    } else {
      constexpr double kLimit = 1.0e6;  // as source_point(): sums below stay inside int32
      if (!(::fabs(rx) < kLimit && ::fabs(ry) < kLimit)) return false;
      const __m128d lim = _mm_set1_pd(kLimit);
      ok &= _mm_movemask_pd(_mm_and_pd(_mm_cmplt_pd(_mm_and_pd(cx, abs_mask), lim),
                                       _mm_cmplt_pd(_mm_and_pd(cy, abs_mask), lim))) == 3;
      const int32_t x0 = static_cast<int32_t>(round_saturate_int(dmul(rx, 1024.0)) + 16);
      const int32_t y0 = static_cast<int32_t>(round_saturate_int(dmul(ry, 1024.0)) + 16);
      // cvtpd2dq rounds to nearest even, as lrint in round_saturate_int()
      const __m128d scale = _mm_set1_pd(1024.0);
      const __m128i qx = _mm_srai_epi32(_mm_add_epi32(_mm_set1_epi32(x0), _mm_cvtpd_epi32(_mm_mul_pd(cx, scale))), 5);
      const __m128i qy = _mm_srai_epi32(_mm_add_epi32(_mm_set1_epi32(y0), _mm_cvtpd_epi32(_mm_mul_pd(cy, scale))), 5);
      px = _mm_srai_epi32(qx, 5);
      py = _mm_srai_epi32(qy, 5);
      const __m128i low = _mm_set1_epi32(31);
      ax = _mm_mul_ps(_mm_cvtepi32_ps(_mm_and_si128(qx, low)), _mm_set1_ps(1.0f / 32.0f));
      ay = _mm_mul_ps(_mm_cvtepi32_ps(_mm_and_si128(qy, low)), _mm_set1_ps(1.0f / 32.0f));
    }
    _mm_storel_epi64(reinterpret_cast<__m128i*>(ix + 2 * h), px);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(iy + 2 * h), py);
    _mm_storel_pi(reinterpret_cast<__m64*>(fx + 2 * h), ax);
    _mm_storel_pi(reinterpret_cast<__m64*>(fy + 2 * h), ay);
  }
  if (!ok) return false;
  for (int i = 0; i < 4; ++i) p[i] = SourcePoint{ix[i], iy[i], fx[i], fy[i], true};
  return true;
}

inline void store4(float* dst, __m128 v) { _mm_storeu_ps(dst, v); }
inline void store4(uint16_t* dst, __m128 v) {
  alignas(16) float tmp[4];
  _mm_store_ps(tmp, v);
  for (int i = 0; i < 4; ++i) dst[i] = float_to_half_bits(tmp[i]);
}
#endif

// One output row of one box: all 3 channels, plus the mirrored row of the flipped copy. With SSE2,
// groups of 4 interior pixels are blended as B,G,R vectors, transposed to per-channel vectors and
// stored 4 at a time (reversed for the flipped copy); everything else takes the scalar path.
template <typename Storage>
void warp_row(const WarpArgs& a, int64_t box, int y) {
  const double* m = a.inv + box * 6;
  const int64_t plane = static_cast<int64_t>(a.out_h) * a.out_w;
  Storage* out = static_cast<Storage*>(a.out);
  const int64_t row = box * 3 * plane + static_cast<int64_t>(y) * a.out_w;
  const int64_t flipped_row = (a.n + box) * 3 * plane + static_cast<int64_t>(y) * a.out_w;
  int x = 0;
#if defined(__SSE2__)
  for (; x + 4 <= a.out_w; x += 4) {
    SourcePoint p[4];
    bool fast = source_points4(m, x, y, a.coords, p);
    if (!fast) {
      for (int i = 0; i < 4; ++i) p[i] = source_point(m, x + i, y, a.coords);
    }
    for (int i = 0; i < 4; ++i) fast = fast && sse_safe(a, p[i]);
    if (!fast) {
      for (int i = 0; i < 4; ++i) {
        float rgb[3];
        pixel_rgb(a, p[i], rgb);
        store_pixel(a, out, row, flipped_row, plane, x + i, rgb);
      }
      continue;
    }
    __m128 v[4];
    for (int i = 0; i < 4; ++i) {
      v[i] = blend_bgr(a.frame + p[i].y0 * a.frame_row_stride + p[i].x0 * 3, a.frame_row_stride, p[i].ax, p[i].ay);
    }
    _MM_TRANSPOSE4_PS(v[0], v[1], v[2], v[3]);  // v[0] = B of pixels x..x+3, v[1] = G, v[2] = R
    for (int c = 0; c < 3; ++c) {
      const __m128 ch = normalize4(v[2 - c], c);
      store4(out + row + c * plane + x, ch);
      if (a.flip) {
        const __m128 reversed = _mm_shuffle_ps(ch, ch, _MM_SHUFFLE(0, 1, 2, 3));
        store4(out + flipped_row + c * plane + (a.out_w - 4 - x), reversed);
      }
    }
  }
#endif
  for (; x < a.out_w; ++x) {
    float rgb[3];
    pixel_rgb(a, source_point(m, x, y, a.coords), rgb);
    store_pixel(a, out, row, flipped_row, plane, x, rgb);
  }
}

// Rows of all boxes in small dynamic chunks: a core that other work keeps busy delays only its
// chunk, not a fixed share. Below ~64x64 output pixels the fork-join costs more than it saves.
template <typename Storage>
void warp_all(const WarpArgs& a) {
  const int64_t rows = a.n * a.out_h;
  const bool parallel = rows * a.out_w >= 4096;
  (void)parallel;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 8) if (parallel)
#endif
  for (int64_t r = 0; r < rows; ++r) {
    warp_row<Storage>(a, r / a.out_h, static_cast<int>(r % a.out_h));
  }
}

}  // namespace

void warp_cpu(const WarpArgs& args) {
  if (args.n == 0 || args.out_h == 0 || args.out_w == 0) return;
  if (args.out_type == FloatType::kFloat32) {
    warp_all<float>(args);
  } else {
    warp_all<uint16_t>(args);
  }
}

}  // namespace vitpose_trt
