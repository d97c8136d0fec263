// warp_kernel + warp_cuda(): the batched crop on the GPU. Contract in warp.h; warp_cpu() in
// warp.cpp is the reference this must equal (same per-pixel helpers, bit-identical coordinates).
#include "warp.h"

#include <algorithm>

namespace vitpose_trt {
namespace {

constexpr int kThreads = 256;

// One thread computes one output pixel of one box (all 3 channels, and its mirror in the flipped
// copy); same per-pixel helpers as warp_cpu() (output_levels, normalize_level, source_channel), so
// the crops and letterboxes are bit-identical to the CPU kernel's. Threads run over (box, y, x) with x fastest, so a warp
// writes 32 consecutive floats of each plane (coalesced; the mirrored writes are consecutive too,
// in descending order). The 12 frame bytes a pixel reads (through any strides) are gathers that
// L1/L2 serve, since neighbouring crop pixels map to neighbouring frame pixels. A grid-stride
// loop covers any N.
template <typename Storage>
__global__ void warp_kernel(WarpArgs a) {
  const int64_t plane = static_cast<int64_t>(a.out_h) * a.out_w;
  const int64_t total = a.n * plane;
  Storage* out = static_cast<Storage*>(a.out);
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t box = i / plane;
    const int64_t in_plane = i - box * plane;
    const int y = static_cast<int>(in_plane / a.out_w);
    const int x = static_cast<int>(in_plane - static_cast<int64_t>(y) * a.out_w);
    const SourcePoint p = source_point(a.inv + box * 6, x, y, a.coords);
    int bgr[3];
    output_levels(a, x, y, p, bgr);
    const int64_t base = box * 3 * plane + in_plane;
    const int64_t mirror = (a.n + box) * 3 * plane + static_cast<int64_t>(y) * a.out_w + (a.out_w - 1 - x);
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const float v = normalize_level(static_cast<float>(bgr[source_channel(c, a.normalize)]), c, a.normalize);
      store_from_float(out, base + c * plane, v);
      if (a.flip) store_from_float(out, mirror + c * plane, v);
    }
  }
}

}  // namespace

void warp_cuda(const WarpArgs& args, std::uintptr_t stream, int device) {
  const int64_t total = args.n * static_cast<int64_t>(args.out_h) * args.out_w;
  if (total == 0) return;
  DeviceGuard guard(device);
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{1} << 20);
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  if (args.out_type == FloatType::kFloat32) {
    warp_kernel<float><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(args);
  } else {
    warp_kernel<uint16_t><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(args);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace vitpose_trt
