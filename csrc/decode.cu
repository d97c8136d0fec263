// decode_kernel + decode_cuda(): the heatmap decode on the GPU. Contract in decode.h; decode_cpu()
// in decode.cpp is the reference this must equal (same helpers, same rounding order).
#include "decode.h"

#include <climits>

namespace vitpose_trt {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr unsigned kFullMask = 0xffffffffu;

// One warp decodes one (n, k) heatmap; same arithmetic as decode_cpu():
//  - argmax: lane l scans elements l, l+32, ... (coalesced), keeping the numpy-order best
//    (first NaN, else first maximum); a shuffle butterfly merges the 32 candidates with the same
//    rule, which is associative, so every lane ends with numpy's argmax and max.
//  - udp: the 7 x 11 horizontal blur sums are spread over the lanes (shared memory), then lane 0
//    does the vertical pass, log, Newton step and writes the keypoint. classic: lane 0 alone.
// Warps never wait on each other (no __syncthreads), so a warp past the last map just returns.
template <typename Storage>
__global__ void decode_kernel(DecodeArgs a) {
  __shared__ float rows[kWarpsPerBlock][kDarkPoints * kDarkRows];
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t map = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (map >= a.n * a.k) return;
  const int64_t n = map / a.k;
  const int k = static_cast<int>(map % a.k);
  const int size = a.h * a.w;
  if (a.flipped != nullptr && (a.flip_index[k] < 0 || a.flip_index[k] >= a.k)) {
    // The binding cannot check device-side flip_index values without synchronizing.
    if (lane == 0) a.out[map * 3] = a.out[map * 3 + 1] = a.out[map * 3 + 2] = NAN;
    return;
  }

  MapView<Storage> m;
  m.hm = static_cast<const Storage*>(a.heatmaps) + map * size;
  m.flipped = a.flipped == nullptr
                  ? nullptr
                  : static_cast<const Storage*>(a.flipped) + (n * a.k + a.flip_index[k]) * static_cast<int64_t>(size);
  m.h = a.h;
  m.w = a.w;
  m.shift = a.mode == DecodeMode::kClassic;

  float best = -INFINITY;
  int bi = INT_MAX;
  int y = lane / a.w, x = lane % a.w;  // (y, x) of element i, advanced without divisions
  const int step_y = 32 / a.w, step_x = 32 % a.w;
  for (int i = lane; i < size; i += 32) {  // i + 32 cannot overflow: size <= kMaxMapSize
    const float v = m.at(y, x);
    if (argmax_better(v, i, best, bi)) {
      best = v;
      bi = i;
    }
    y += step_y;
    x += step_x;
    if (x >= a.w) {
      x -= a.w;
      ++y;
    }
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float ov = __shfl_xor_sync(kFullMask, best, offset);
    const int oi = __shfl_xor_sync(kFullMask, bi, offset);
    if (argmax_better(ov, oi, best, bi)) {
      best = ov;
      bi = oi;
    }
  }

  const int ix = bi % a.w, iy = bi / a.w;
  float px = -1.0f, py = -1.0f;
  if (best > 0.0f) {  // same value in every lane: the branch is warp-uniform
    px = static_cast<float>(ix);
    py = static_cast<float>(iy);
    if (a.mode == DecodeMode::kUdp) {
      for (int t = lane; t < kDarkPoints * kDarkRows; t += 32) {
        int cx, cy;
        dark_point(t / kDarkRows, ix, iy, a.h, a.w, &cx, &cy);
        rows[warp][t] = dark_row_sum(m, cx, cy, t % kDarkRows);
      }
      __syncwarp();
      if (lane == 0) {
        float L[kDarkPoints];
        for (int p = 0; p < kDarkPoints; ++p) L[p] = dark_log_blur(&rows[warp][p * kDarkRows]);
        dark_newton_step(L, &px, &py);
      }
    } else if (lane == 0) {
      classic_offset(m, ix, iy, &px, &py);
    }
  }
  if (lane == 0) write_keypoint(a.transforms + n * 4, a.mode, a.h, a.w, px, py, best, a.out + map * 3);
}

}  // namespace

void decode_cuda(const DecodeArgs& args, std::uintptr_t stream, int device) {
  const int64_t maps = args.n * args.k;
  if (maps == 0) return;
  DeviceGuard guard(device);
  const int64_t blocks = (maps + kWarpsPerBlock - 1) / kWarpsPerBlock;
  if (blocks > INT_MAX) throw std::invalid_argument("decode_cuda: too many heatmaps for one launch");
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  if (args.type == FloatType::kFloat32) {
    decode_kernel<float><<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, s>>>(args);
  } else {
    decode_kernel<uint16_t><<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, s>>>(args);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace vitpose_trt
