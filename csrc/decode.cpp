// decode_cpu(): the CPU reference (and fallback) of the heatmap decode. Contract in decode.h.
#include "decode.h"

#include <algorithm>

#include "parallel.h"

namespace vitpose_trt {
namespace {

// Work split (parallel.h): one thread decodes a 64x48 map in ~6-7 us (DARK-UDP; 0.10-0.12 ms
// per 17-keypoint box, measured on the 2-core x86 CI machine, docs/BENCHMARKS.md), so chunks of
// kMapsPerChunk maps are ~13 us and a thread's minimum share of kMinMapsPerThread maps is ~0.1 ms:
// 1 box (17 maps) stays on the calling thread, from 2 boxes (34 maps) a second thread helps
// (4 boxes: 0.24-0.38 ms at 2 threads vs 0.42-0.46 ms at 1).
constexpr int64_t kMapsPerChunk = 2;
constexpr int64_t kMinMapsPerThread = 16;

template <typename Storage>
MapView<Storage> map_of(const DecodeArgs& a, int64_t n, int k) {
  const int64_t plane = static_cast<int64_t>(a.h) * a.w;
  MapView<Storage> m;
  m.hm = static_cast<const Storage*>(a.heatmaps) + (n * a.k + k) * plane;
  m.flipped = a.flipped == nullptr
                  ? nullptr
                  : static_cast<const Storage*>(a.flipped) + (n * a.k + a.flip_index[k]) * plane;
  m.h = a.h;
  m.w = a.w;
  m.shift = a.mode == DecodeMode::kClassic;
  return m;
}

// One keypoint: argmax scan, then the refinement and the mapping to the frame.
template <typename Storage>
void decode_one(const DecodeArgs& a, int64_t n, int k) {
  const MapView<Storage> m = map_of<Storage>(a, n, k);
  // argmax in numpy's order: the first maximum, or the first NaN (the scan stops there)
  float best = m.at(0, 0);
  int64_t bi = 0;
  for (int y = 0; y < a.h && best == best; ++y) {
    for (int x = 0; x < a.w; ++x) {
      const float v = m.at(y, x);
      if (v > best || v != v) {
        best = v;
        bi = static_cast<int64_t>(y) * a.w + x;
        if (v != v) break;
      }
    }
  }
  const int ix = static_cast<int>(bi % a.w), iy = static_cast<int>(bi / a.w);
  float px = -1.0f, py = -1.0f;
  if (best > 0.0f) {
    px = static_cast<float>(ix);
    py = static_cast<float>(iy);
    if (a.mode == DecodeMode::kClassic) {
      classic_offset(m, ix, iy, &px, &py);
    } else {
      float L[kDarkPoints];
      for (int p = 0; p < kDarkPoints; ++p) {
        int cx, cy;
        dark_point(p, ix, iy, a.h, a.w, &cx, &cy);
        float rows[kDarkRows];
        for (int r = 0; r < kDarkRows; ++r) rows[r] = dark_row_sum(m, cx, cy, r);
        L[p] = dark_log_blur(rows);
      }
      dark_newton_step(L, &px, &py);
    }
  }
  write_keypoint(a.transforms + n * 4, a.mode, a.h, a.w, px, py, best, a.out + (n * a.k + k) * 3);
}

template <typename Storage>
void decode_all(const DecodeArgs& a) {
  const int64_t maps = a.n * a.k;
  const int threads = static_cast<int>(std::min<int64_t>(a.threads, std::max<int64_t>(1, maps / kMinMapsPerThread)));
  parallel_for(maps, kMapsPerChunk, threads, [&a](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) decode_one<Storage>(a, i / a.k, static_cast<int>(i % a.k));
  });
}

}  // namespace

void decode_cpu(const DecodeArgs& args) {
  if (args.n == 0 || args.k == 0) return;
  if (args.type == FloatType::kFloat32) {
    decode_all<float>(args);
  } else {
    decode_all<uint16_t>(args);
  }
}

}  // namespace vitpose_trt
