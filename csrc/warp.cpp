// warp_cpu(): the CPU reference (and fallback) of the batched crop. Contract in warp.h.
#include "warp.h"

#include <algorithm>
#include <cstddef>
#include <utility>

#include "parallel.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

namespace vitpose_trt {
namespace {

// Work split (parallel.h): chunks of kRowsPerChunk output rows, and one more thread per
// kMinPixelsPerThread output pixels. Measured on the 2-core x86 CI machine (docs/BENCHMARKS.md,
// "C++ kernels: threads and load"): one thread crops ~10 ns per output pixel (0.49-0.53 ms per
// 256x192 box, ~2 us per 192-px row), so a chunk of 4 rows is ~8 us (a preempted helper holds at
// most that much work) and a thread's minimum share of 16384 px is ~0.17 ms, well above what
// waking a helper costs; at 1 box (3 such shares) 2 threads measured 0.48 ms median against
// 0.49 ms for 1 thread over 3,000 interleaved calls on that shared (busy) machine, so the split
// pays from one box up and never lost there.
constexpr int64_t kRowsPerChunk = 4;
constexpr int64_t kMinPixelsPerThread = 16384;

// normalize_level() of every level, per output channel, for one Normalize mode: the same bits,
// without 2 divisions a value.
struct NormalizeTable {
  float v[3][256];
  explicit NormalizeTable(Normalize mode) {
    for (int c = 0; c < 3; ++c) {
      for (int l = 0; l < 256; ++l) v[c][l] = normalize_level(static_cast<float>(l), c, mode);
    }
  }
};
const NormalizeTable kNormalize[4] = {NormalizeTable(Normalize::kImageNet), NormalizeTable(Normalize::kUnit),
                                      NormalizeTable(Normalize::kRaw), NormalizeTable(Normalize::kMeanStd)};

inline const NormalizeTable& table(const WarpArgs& a) { return kNormalize[static_cast<int>(a.normalize)]; }

// Scalar path for output pixel (x, y): the values of output channels 0, 1, 2.
inline void pixel_values(const WarpArgs& a, int x, int y, const SourcePoint& p, float out[3]) {
  int bgr[3];
  output_levels(a, x, y, p, bgr);
  const NormalizeTable& t = table(a);
  for (int c = 0; c < 3; ++c) out[c] = t.v[c][bgr[source_channel(c, a.normalize)]];
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
// Frames whose pixels are 3 adjacent bytes and whose neighbouring pixels are adjacent in memory
// (pixel stride +-3, channel stride +-1: packed, mirrored, BGR->RGB views; any row stride). One
// 8-byte load per footprint row then covers both horizontal neighbours. Other layouts take the
// scalar path.
struct PackedLayout {
  bool ok;
  bool mirrored;      // pixel stride -3: pixel x0 + 1 comes first in memory
  bool reversed;      // channel stride -1: memory holds channel 2, 1, 0
  int64_t first_off;  // from pixel(x0, y0) to the lowest byte of the footprint's top row
};

inline PackedLayout packed_layout(const FrameView& f) {
  PackedLayout l{false, false, false, 0};
  const int64_t ps = f.pixel_stride, cs = f.channel_stride;
  if (!((ps == 3 || ps == -3) && (cs == 1 || cs == -1))) return l;
  l.ok = true;
  l.mirrored = ps < 0;
  l.reversed = cs < 0;
  l.first_off = (l.mirrored ? ps : 0) + (l.reversed ? 2 * cs : 0);
  return l;
}

// All 4 neighbours inside the frame, and the 8-byte loads stay inside the frame's memory: they
// read 2 bytes past the second pixel, which belong to pixel x0 + 2 (packed) or x0 - 1 (mirrored).
inline bool sse_safe(const WarpArgs& a, const PackedLayout& l, const SourcePoint& p) {
  return p.valid && p.y0 >= 0 && p.y0 + 1 < a.frame.h &&
         (l.mirrored ? (p.x0 >= 1 && p.x0 + 1 < a.frame.w) : (p.x0 >= 0 && p.x0 + 2 < a.frame.w));
}

// The two neighbours of one footprint row as 16-bit lanes, interleaved per channel:
// (c0 first, c0 second, c1 first, c1 second, c2 first, c2 second, -, -) in memory order.
inline __m128i row_pairs(const uint8_t* lowest) {
  const __m128i zero = _mm_setzero_si128();
  const __m128i r = _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(lowest)), zero);
  return _mm_unpacklo_epi16(r, _mm_srli_si128(r, 6));
}

// fixed_weights() of the 32x32 fractions as (w00 | w01 << 16, w10 | w11 << 16) for pmaddwd.
struct WeightPairs {
  int32_t top[1024], bot[1024];
  WeightPairs() {
    for (int i = 0; i < 1024; ++i) {
      int32_t w[4];
      fixed_weights(i % 32, i / 32, w);
      top[i] = static_cast<int32_t>(static_cast<uint32_t>(w[0]) | (static_cast<uint32_t>(w[1]) << 16));
      bot[i] = static_cast<int32_t>(static_cast<uint32_t>(w[2]) | (static_cast<uint32_t>(w[3]) << 16));
    }
  }
};
const WeightPairs kWeightPairs;

// bilinear_levels() for one interior pixel: the 3 levels as int32 lanes (B, G, R, -).
inline __m128i levels_bgr(const WarpArgs& a, const PackedLayout& l, const SourcePoint& p) {
  const uint8_t* lowest = a.frame.pixel(p.x0, p.y0) + l.first_off;
  const __m128i top = row_pairs(lowest), bot = row_pairs(lowest + a.frame.row_stride);
  __m128i v;
  if (a.coords == WarpCoords::kFixed) {
    // pmaddwd: first * w_first + second * w_second per channel, exact in int32 (weights <= 32767),
    // with each row's weight pair packed into one int32 (low half: the first pixel in memory).
    int32_t top_pair = kWeightPairs.top[p.fy * 32 + p.fx], bot_pair = kWeightPairs.bot[p.fy * 32 + p.fx];
    if (l.mirrored) {  // pixel x0 + 1 comes first: swap the halves
      top_pair = static_cast<int32_t>((static_cast<uint32_t>(top_pair) >> 16) | (static_cast<uint32_t>(top_pair) << 16));
      bot_pair = static_cast<int32_t>((static_cast<uint32_t>(bot_pair) >> 16) | (static_cast<uint32_t>(bot_pair) << 16));
    }
    const __m128i sum = _mm_add_epi32(_mm_madd_epi16(top, _mm_set1_epi32(top_pair)),
                                      _mm_madd_epi16(bot, _mm_set1_epi32(bot_pair)));
    v = _mm_srai_epi32(_mm_add_epi32(sum, _mm_set1_epi32(1 << 14)), 15);
  } else {
    // the float blend of bilinear_levels(), same operations lane by lane, then cvtps2dq (nearest
    // even, the default MXCSR mode) as float_level(); values stay within [0, 255]
    const __m128i t_first = _mm_and_si128(top, _mm_set1_epi32(0xffff)), t_second = _mm_srli_epi32(top, 16);
    const __m128i b_first = _mm_and_si128(bot, _mm_set1_epi32(0xffff)), b_second = _mm_srli_epi32(bot, 16);
    __m128 p00 = _mm_cvtepi32_ps(t_first), p01 = _mm_cvtepi32_ps(t_second);
    __m128 p10 = _mm_cvtepi32_ps(b_first), p11 = _mm_cvtepi32_ps(b_second);
    if (l.mirrored) {
      std::swap(p00, p01);
      std::swap(p10, p11);
    }
    const __m128 vax = _mm_set1_ps(p.ax), vay = _mm_set1_ps(p.ay);
    const __m128 t = _mm_add_ps(p00, _mm_mul_ps(vax, _mm_sub_ps(p01, p00)));
    const __m128 b = _mm_add_ps(p10, _mm_mul_ps(vax, _mm_sub_ps(p11, p10)));
    v = _mm_cvtps_epi32(_mm_add_ps(t, _mm_mul_ps(vay, _mm_sub_ps(b, t))));
  }
  if (l.reversed) v = _mm_shuffle_epi32(v, _MM_SHUFFLE(3, 0, 1, 2));  // memory order was 2, 1, 0
  return v;
}

// source_point() for pixels x..x+3 of row y, two doubles per register, bit-identical to it (the
// same IEEE operations lane by lane; coordinates of valid points fit int32). Returns false when
// any of the 4 points is invalid, leaving them to the scalar path.
inline bool source_points4(const double* m, int x, int y, WarpCoords coords, SourcePoint p[4]) {
  const double rx = dadd(dmul(m[1], static_cast<double>(y)), m[2]);
  const double ry = dadd(dmul(m[4], static_cast<double>(y)), m[5]);
  const __m128d xs[2] = {_mm_setr_pd(x, x + 1.0), _mm_setr_pd(x + 2.0, x + 3.0)};
  const __m128d abs_mask = _mm_castsi128_pd(_mm_set1_epi64x(0x7fffffffffffffffLL));
  alignas(16) int32_t ix[4], iy[4], qfx[4], qfy[4];
  alignas(16) float fx[4] = {0, 0, 0, 0}, fy[4] = {0, 0, 0, 0};
  int ok = 1;
  for (int h = 0; h < 2; ++h) {
    const __m128d cx = _mm_mul_pd(_mm_set1_pd(m[0]), xs[h]);
    const __m128d cy = _mm_mul_pd(_mm_set1_pd(m[3]), xs[h]);
    __m128i px, py, qx = _mm_setzero_si128(), qy = _mm_setzero_si128();
    if (coords == WarpCoords::kFloat) {
      const __m128d sx = _mm_add_pd(cx, _mm_set1_pd(rx)), sy = _mm_add_pd(cy, _mm_set1_pd(ry));
      const __m128d lim = _mm_set1_pd(kFloatLimit);
      ok &= _mm_movemask_pd(_mm_and_pd(_mm_cmplt_pd(_mm_and_pd(sx, abs_mask), lim),
                                       _mm_cmplt_pd(_mm_and_pd(sy, abs_mask), lim))) == 3;
      // floor: truncate, then one less where truncation went up (negative non-integers)
      const __m128d one = _mm_set1_pd(1.0);
      const __m128d tx = _mm_cvtepi32_pd(_mm_cvttpd_epi32(sx)), ty = _mm_cvtepi32_pd(_mm_cvttpd_epi32(sy));
      const __m128d flx = _mm_sub_pd(tx, _mm_and_pd(_mm_cmpgt_pd(tx, sx), one));
      const __m128d fly = _mm_sub_pd(ty, _mm_and_pd(_mm_cmpgt_pd(ty, sy), one));
      px = _mm_cvttpd_epi32(flx);
      py = _mm_cvttpd_epi32(fly);
      _mm_storel_pi(reinterpret_cast<__m64*>(fx + 2 * h), _mm_cvtpd_ps(_mm_sub_pd(sx, flx)));
      _mm_storel_pi(reinterpret_cast<__m64*>(fy + 2 * h), _mm_cvtpd_ps(_mm_sub_pd(sy, fly)));
    } else {
      if (!(::fabs(rx) < kFixedLimit && ::fabs(ry) < kFixedLimit)) return false;  // as source_point()
      const __m128d lim = _mm_set1_pd(kFixedLimit);
      ok &= _mm_movemask_pd(_mm_and_pd(_mm_cmplt_pd(_mm_and_pd(cx, abs_mask), lim),
                                       _mm_cmplt_pd(_mm_and_pd(cy, abs_mask), lim))) == 3;
      const int32_t x0 = static_cast<int32_t>(round_saturate_int(dmul(rx, 1024.0)) + 16);
      const int32_t y0 = static_cast<int32_t>(round_saturate_int(dmul(ry, 1024.0)) + 16);
      // cvtpd2dq rounds to nearest even, as lrint in round_saturate_int()
      const __m128d scale = _mm_set1_pd(1024.0);
      const __m128i sx = _mm_srai_epi32(_mm_add_epi32(_mm_set1_epi32(x0), _mm_cvtpd_epi32(_mm_mul_pd(cx, scale))), 5);
      const __m128i sy = _mm_srai_epi32(_mm_add_epi32(_mm_set1_epi32(y0), _mm_cvtpd_epi32(_mm_mul_pd(cy, scale))), 5);
      px = _mm_srai_epi32(sx, 5);
      py = _mm_srai_epi32(sy, 5);
      const __m128i low = _mm_set1_epi32(31);
      qx = _mm_and_si128(sx, low);
      qy = _mm_and_si128(sy, low);
    }
    _mm_storel_epi64(reinterpret_cast<__m128i*>(ix + 2 * h), px);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(iy + 2 * h), py);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(qfx + 2 * h), qx);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(qfy + 2 * h), qy);
  }
  if (!ok) return false;
  for (int i = 0; i < 4; ++i) p[i] = SourcePoint{ix[i], iy[i], qfx[i], qfy[i], fx[i], fy[i], true};
  return true;
}

inline void store4(float* dst, __m128 v) { _mm_storeu_ps(dst, v); }
inline void store4(uint16_t* dst, __m128 v) {
  alignas(16) float tmp[4];
  _mm_store_ps(tmp, v);
  for (int i = 0; i < 4; ++i) dst[i] = float_to_half_bits(tmp[i]);
}
#endif

// One output row of one box: all 3 channels, plus the mirrored row of the flipped copy. With SSE2
// and a packed layout, groups of 4 interior pixels are interpolated as B,G,R vectors, normalized
// through the table and stored 4 at a time (reversed for the flipped copy); everything else
// takes the scalar path. Both give identical bits.
template <typename Storage>
void warp_row(const WarpArgs& a, int64_t box, int y) {
  const double* m = a.inv + box * 6;
  const int64_t plane = static_cast<int64_t>(a.out_h) * a.out_w;
  Storage* out = static_cast<Storage*>(a.out);
  const int64_t row = box * 3 * plane + static_cast<int64_t>(y) * a.out_w;
  const int64_t flipped_row = (a.n + box) * 3 * plane + static_cast<int64_t>(y) * a.out_w;
  int x = 0;
#if defined(__SSE2__)
  const PackedLayout layout = packed_layout(a.frame);
  for (; layout.ok && x + 4 <= a.out_w; x += 4) {
    SourcePoint p[4];
    bool fast = source_points4(m, x, y, a.coords, p);
    if (!fast) {
      for (int i = 0; i < 4; ++i) p[i] = source_point(m, x + i, y, a.coords);
    }
    for (int i = 0; i < 4; ++i) fast = fast && sse_safe(a, layout, p[i]) && !in_padding(a.letterbox, x + i, y);
    if (!fast) {
      for (int i = 0; i < 4; ++i) {
        float rgb[3];
        pixel_values(a, x + i, y, p[i], rgb);
        store_pixel(a, out, row, flipped_row, plane, x + i, rgb);
      }
      continue;
    }
    alignas(16) int32_t lv[4][4];  // pixel, channel (B, G, R, -)
    for (int i = 0; i < 4; ++i) _mm_store_si128(reinterpret_cast<__m128i*>(lv[i]), levels_bgr(a, layout, p[i]));
    for (int c = 0; c < 3; ++c) {
      const float* t = table(a).v[c];
      const int ch_in = source_channel(c, a.normalize);  // RGB output: c = 0 is R = frame channel 2
      const __m128 ch = _mm_setr_ps(t[lv[0][ch_in]], t[lv[1][ch_in]], t[lv[2][ch_in]], t[lv[3][ch_in]]);
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
    pixel_values(a, x, y, source_point(m, x, y, a.coords), rgb);
    store_pixel(a, out, row, flipped_row, plane, x, rgb);
  }
}

template <typename Storage>
void warp_all(const WarpArgs& a) {
  const int64_t rows = a.n * a.out_h;
  const int64_t by_work = std::max<int64_t>(1, rows * a.out_w / kMinPixelsPerThread);
  const int threads = static_cast<int>(std::min<int64_t>(a.threads, by_work));
  parallel_for(rows, kRowsPerChunk, threads, [&a](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) warp_row<Storage>(a, r / a.out_h, static_cast<int>(r % a.out_h));
  });
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
