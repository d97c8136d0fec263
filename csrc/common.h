// Shared by every kernel family: host/device qualifiers, dtypes, float16 bit conversions,
// contraction-free double arithmetic, and the CUDA error check.
//
// Build macros (set by CMakeLists.txt):
//   VITPOSE_TRT_WITH_CUDA  the *_cuda entry points are compiled (nvcc was found).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define VT_HD __host__ __device__ __forceinline__
#else
#define VT_HD inline
#endif

#ifdef VITPOSE_TRT_WITH_CUDA
#include <cuda_runtime.h>

// Throws (never exits) with the call, the place and CUDA's own message. The error is also taken
// off this module's runtime (cudaGetLastError), so it does not fail the next, valid call's launch check.
#define CUDA_CHECK(call)                                                                        \
  do {                                                                                          \
    cudaError_t vt_err_ = (call);                                                               \
    if (vt_err_ != cudaSuccess) {                                                               \
      cudaGetLastError();                                                                       \
      throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(vt_err_) +     \
                               " (" #call " at " __FILE__ ":" + std::to_string(__LINE__) + ")"); \
    }                                                                                           \
  } while (0)

// After every <<<...>>>: launch-configuration errors surface here, synchronously, without
// waiting for the kernel (we never synchronize the caller's stream).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

namespace vitpose_trt {

// Makes `device` current for the launch and restores the caller's device afterwards, so a tensor
// on cuda:1 works while cuda:0 is current (torch's own convention).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) {
      CUDA_CHECK(cudaSetDevice(device));
      changed_ = true;
    }
  }
  ~DeviceGuard() {
    if (changed_) cudaSetDevice(previous_);  // a destructor must not throw
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

}  // namespace vitpose_trt
#endif

namespace vitpose_trt {

// The element types the kernels accept for float tensors. float16 travels as its IEEE bits
// (uint16_t) through host code: pybind11's numpy support has no half type.
enum class FloatType { kFloat32, kFloat16 };

inline const char* float_type_name(FloatType t) { return t == FloatType::kFloat32 ? "float32" : "float16"; }

// ---- float16 <-> float32 -----------------------------------------------------------------------
// Host: portable bit manipulation (exact for every half value, NaN payloads kept, round to nearest
// even on the way down). Device: the hardware conversions, which give the same bits.

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float half_bits_to_float_host(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));  // 127 - 15 = 112
  if (mant == 0) return bits_to_float(sign);                                         // +-0
  // Subnormal: value = mant * 2^-24; normalize the mantissa into a float32.
  int e = -1;
  do {
    ++e;
    mant <<= 1;
  } while ((mant & 0x400u) == 0);
  return bits_to_float(sign | ((112u - static_cast<uint32_t>(e)) << 23) | ((mant & 0x3ffu) << 13));
}

inline uint16_t float_to_half_bits_host(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or NaN (keep NaN quiet and non-zero)
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? (0x200u | ((abs >> 13) & 0x3ffu)) : 0u));
  }
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs >= 0x38800000u) {                                              // normal half (>= 2^-14)
    // Rebias the exponent, then round the 13 dropped bits to nearest even; a carry out of the
    // mantissa correctly bumps the exponent.
    const uint32_t m = abs - (112u << 23);
    const uint32_t rounded = m + 0x0fffu + ((m >> 13) & 1u);
    return static_cast<uint16_t>(sign | (rounded >> 13));
  }
  if (abs < 0x33000000u) return sign;  // below half the smallest subnormal (2^-25): +-0
  // Subnormal half: value / 2^-24, rounded to nearest even, from the 24-bit float mantissa.
  const uint32_t exp = abs >> 23;
  const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - exp;  // 113 - exp + 13: aligns 2^-24 with bit 0
  const uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  const uint32_t r = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
  return static_cast<uint16_t>(sign | r);
}

VT_HD float half_bits_to_float(uint16_t h) {
#ifdef __CUDA_ARCH__
  return __half2float(__ushort_as_half(h));
#else
  return half_bits_to_float_host(h);
#endif
}

VT_HD uint16_t float_to_half_bits(float f) {
#ifdef __CUDA_ARCH__
  return __half_as_ushort(__float2half_rn(f));
#else
  return float_to_half_bits_host(f);
#endif
}

// Element loads/stores for the two float types, used by templates over `Storage`
// (float for float32 data, uint16_t for float16 bits).
VT_HD float load_as_float(const float* p, int64_t i) { return p[i]; }
VT_HD float load_as_float(const uint16_t* p, int64_t i) { return half_bits_to_float(p[i]); }
VT_HD void store_from_float(float* p, int64_t i, float v) { p[i] = v; }
VT_HD void store_from_float(uint16_t* p, int64_t i, float v) { p[i] = float_to_half_bits(v); }

// ---- double arithmetic without FMA contraction -------------------------------------------------
// nvcc fuses a*b+c into one FMA by default and host compilers may too (-ffp-contract). Where a
// result must be bit-identical between warp_cpu/decode_cpu, the CUDA kernels and numpy (which
// rounds every operation), we spell each rounding out.
VT_HD double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

VT_HD double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

VT_HD double dsub(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

VT_HD double ddiv(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

// The same for float, where numpy's float32 rounding must be reproduced exactly.
VT_HD float fmul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

VT_HD float fadd(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

VT_HD float fsub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

VT_HD float fdiv(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);  // IEEE division even under --use_fast_math / -prec-div=false
#else
  return a / b;
#endif
}

// Single-rounding float32 a*b+c (what OpenCV's SIMD filters compute with FMA instructions).
// Host: a*b is exact in double (24 + 24 bits); rounding the sum to double and then to float can
// differ from one rounding only when the double lands exactly halfway between two floats, so that
// case is nudged by the sign of the double sum's own rounding error (two-sum).
VT_HD float fma_f32(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  const double p = static_cast<double>(a) * static_cast<double>(b);
  double s = p + static_cast<double>(c);
  uint64_t bits;
  std::memcpy(&bits, &s, sizeof bits);
  if ((bits & 0x1fffffffULL) == 0x10000000ULL) {  // the 29 bits float drops are exactly one half
    const double bb = s - p;
    const double err = (p - (s - bb)) + (static_cast<double>(c) - bb);
    if (err > 0) s = std::nextafter(s, HUGE_VAL);
    if (err < 0) s = std::nextafter(s, -HUGE_VAL);
  }
  return static_cast<float>(s);
#endif
}

}  // namespace vitpose_trt
