// vitpose_trt._C: argument checks and module definitions only; the work is in warp.* / decode.*.
//
// Every entry point validates its arguments at the boundary and raises TypeError (wrong kind of
// object, wrong dtype) or ValueError (rank, shape, strides, values) naming the argument, then
// releases the GIL around the work. *_cpu take numpy arrays; *_cuda take objects exposing
// __cuda_array_interface__ (torch CUDA tensors, CuPy arrays) and enqueue on the caller's stream
// without synchronizing the host; an interface (v3) that names its producer's stream makes that
// stream wait for the producer's first. Objects without the interface are rejected before any CUDA
// call, so the errors are the same on machines without a GPU.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common.h"
#include "decode.h"
#include "parallel.h"
#include "warp.h"

#ifndef VITPOSE_TRT_VERSION
#define VITPOSE_TRT_VERSION "unknown"
#endif
#ifndef VITPOSE_TRT_CUDA_ARCHS
#define VITPOSE_TRT_CUDA_ARCHS ""
#endif

namespace py = pybind11;
using namespace vitpose_trt;

namespace {

// ---- a view of one array argument, from numpy or from __cuda_array_interface__ ------------------

enum class DType { kUInt8, kInt32, kFloat16, kFloat32, kFloat64, kOther };

const char* dtype_name(DType d) {
  switch (d) {
    case DType::kUInt8: return "uint8";
    case DType::kInt32: return "int32";
    case DType::kFloat16: return "float16";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    default: return "unsupported";
  }
}

DType dtype_from(char kind, int64_t itemsize) {
  if (kind == 'u' && itemsize == 1) return DType::kUInt8;
  if (kind == 'i' && itemsize == 4) return DType::kInt32;
  if (kind == 'f' && itemsize == 2) return DType::kFloat16;
  if (kind == 'f' && itemsize == 4) return DType::kFloat32;
  if (kind == 'f' && itemsize == 8) return DType::kFloat64;
  return DType::kOther;
}

struct Array {
  const char* name = "";
  void* data = nullptr;
  bool readonly = false;
  DType dtype = DType::kOther;
  std::string dtype_str;          // as the caller spelled it, for messages
  int64_t itemsize = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;   // bytes
  bool on_device = false;         // from __cuda_array_interface__
  std::uintptr_t producer = 0;    // its v3 "stream": 0 = none named, 1 = legacy default, 2 = per-thread, else a handle

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
};

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << '(';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

std::string type_name(const py::handle& obj) {
  const py::handle type = py::type::handle_of(obj);
  const std::string module = py::str(type.attr("__module__"));
  const std::string qual = py::str(type.attr("__qualname__"));
  return module == "builtins" ? qual : module + "." + qual;
}

std::string fmt(const char* name, const std::string& what) { return std::string(name) + ": " + what; }

bool native_byte_order(char order) {
  const uint16_t probe = 1;
  const bool little = *reinterpret_cast<const uint8_t*>(&probe) == 1;
  return order == '=' || order == '|' || order == (little ? '<' : '>');
}

Array from_numpy(const py::object& obj, const char* name, bool writable) {
  if (!py::isinstance<py::array>(obj)) {
    throw py::type_error(fmt(name, "expected a numpy array, got " + type_name(obj)));
  }
  const auto arr = py::reinterpret_borrow<py::array>(obj);
  Array a;
  a.name = name;
  const py::dtype dt = arr.dtype();
  a.itemsize = dt.itemsize();
  a.dtype = dtype_from(dt.kind(), a.itemsize);
  a.dtype_str = py::str(dt);
  if (!native_byte_order(dt.byteorder())) {
    throw py::type_error(fmt(name, "expected native byte order, got dtype " + a.dtype_str));
  }
  for (py::ssize_t i = 0; i < arr.ndim(); ++i) {
    a.shape.push_back(arr.shape(i));
    a.strides.push_back(arr.strides(i));
  }
  if (writable && !arr.writeable()) throw py::value_error(fmt(name, "array is read-only"));
  a.readonly = !arr.writeable();
  a.data = const_cast<void*>(arr.data());
  return a;
}

// __cuda_array_interface__ (v2/v3): shape, typestr, data=(ptr, readonly), strides (None = C order).
Array from_cuda_array_interface(const py::object& obj, const char* name, bool writable) {
  if (!py::hasattr(obj, "__cuda_array_interface__")) {
    throw py::type_error(fmt(name, "expected a CUDA array (an object with __cuda_array_interface__, e.g. a torch "
                                   "CUDA tensor), got " + type_name(obj) +
                                   " (host memory? use the *_cpu entry point)"));
  }
  const py::dict cai = obj.attr("__cuda_array_interface__");
  Array a;
  a.name = name;
  a.on_device = true;
  for (const auto& s : cai["shape"].cast<py::tuple>()) a.shape.push_back(s.cast<int64_t>());
  a.dtype_str = cai["typestr"].cast<std::string>();
  if (a.dtype_str.size() < 3 || !native_byte_order(a.dtype_str[0])) {
    throw py::type_error(fmt(name, "unsupported typestr " + a.dtype_str));
  }
  a.itemsize = std::stoll(a.dtype_str.substr(2));
  a.dtype = dtype_from(a.dtype_str[1], a.itemsize);
  const py::tuple data = cai["data"].cast<py::tuple>();
  a.data = reinterpret_cast<void*>(data[0].cast<std::uintptr_t>());
  a.readonly = data[1].cast<bool>();
  if (writable && a.readonly) throw py::value_error(fmt(name, "array is read-only"));
  if (cai.contains("mask") && !cai["mask"].is_none()) {
    throw py::value_error(fmt(name, "masked arrays are not supported"));
  }
  if (cai.contains("stream") && !cai["stream"].is_none()) {  // v3: the stream the producer writes it on
    const py::object stream = cai["stream"];
    if (!py::isinstance<py::int_>(stream) || py::isinstance<py::bool_>(stream)) {
      throw py::type_error(fmt(name, "__cuda_array_interface__ 'stream' must be None or an int, got " +
                                         type_name(stream)));
    }
    const long long value = stream.cast<long long>();
    if (value == 0) throw py::value_error(fmt(name, "__cuda_array_interface__ 'stream' is 0, which the protocol disallows"));
    if (value < 0) {
      throw py::value_error(fmt(name, "__cuda_array_interface__ 'stream' must be a stream handle, got " +
                                          std::to_string(value)));
    }
    a.producer = static_cast<std::uintptr_t>(value);
  }
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    for (const auto& s : cai["strides"].cast<py::tuple>()) a.strides.push_back(s.cast<int64_t>());
  } else {  // C-contiguous
    a.strides.assign(a.shape.size(), 0);
    int64_t st = a.itemsize;
    for (size_t i = a.shape.size(); i-- > 0;) {
      a.strides[i] = st;
      st *= a.shape[i];
    }
  }
  return a;
}

// ---- checks -------------------------------------------------------------------------------------

void check_dtype(const Array& a, std::initializer_list<DType> allowed) {
  for (DType d : allowed) {
    if (a.dtype == d) return;
  }
  std::string names;
  for (DType d : allowed) names += std::string(names.empty() ? "" : " or ") + dtype_name(d);
  throw py::type_error(fmt(a.name, "expected dtype " + names + ", got " + a.dtype_str));
}

void check_ndim(const Array& a, size_t ndim, const char* layout) {
  if (a.shape.size() != ndim) {
    throw py::value_error(fmt(a.name, "expected " + std::to_string(ndim) + " dimensions " + layout + ", got " +
                                          std::to_string(a.shape.size()) + " with shape " + shape_str(a.shape)));
  }
  // numpy guarantees both; __cuda_array_interface__ shapes are whatever the producer wrote.
  int64_t count = 1;
  for (int64_t s : a.shape) {
    if (s < 0) throw py::value_error(fmt(a.name, "negative dimension in shape " + shape_str(a.shape)));
    if (s != 0 && count > INT64_MAX / s) throw py::value_error(fmt(a.name, "too large: " + shape_str(a.shape)));
    count *= s;
  }
}

void check_shape(const Array& a, const std::vector<int64_t>& expected, const std::string& why = "") {
  if (a.shape != expected) {
    throw py::value_error(fmt(a.name, "expected shape " + shape_str(expected) + why + ", got " + shape_str(a.shape)));
  }
}

// The kernels index these arrays as plain C arrays of their element type: C-contiguous (numpy's
// rule: dimensions of size 1 may have any stride; an empty array is contiguous) and aligned to the
// element size (a misaligned float* access is undefined behaviour on the host, a fault on a GPU).
void check_dense(const Array& a) {
  if (a.numel() == 0) return;
  if (reinterpret_cast<std::uintptr_t>(a.data) % static_cast<std::uintptr_t>(a.itemsize) != 0) {
    throw py::value_error(fmt(a.name, "data is not aligned to its " + std::to_string(a.itemsize) +
                                          "-byte elements (a view at an odd byte offset?); pass an aligned copy "
                                          "(np.ascontiguousarray / np.require(a, requirements='A'))"));
  }
  int64_t expected = a.itemsize;
  for (size_t i = a.shape.size(); i-- > 0;) {
    if (a.shape[i] != 1 && a.strides[i] != expected) {
      throw py::value_error(fmt(a.name, "must be C-contiguous, got strides " + shape_str(a.strides) +
                                            " (bytes) for shape " + shape_str(a.shape) +
                                            " (use np.ascontiguousarray / tensor.contiguous())"));
    }
    expected *= a.shape[i];
  }
}

// The bytes an array's elements span, [first, last + itemsize), from its strides (any signs). In
// double: exact for every real address (< 2^53), and bogus interface strides cannot overflow it.
std::pair<double, double> byte_span(const Array& a) {
  const double base = static_cast<double>(reinterpret_cast<std::uintptr_t>(a.data));
  double lo = base, hi = base + static_cast<double>(a.itemsize);
  for (size_t i = 0; i < a.shape.size(); ++i) {
    const double reach = static_cast<double>(a.shape[i] - 1) * static_cast<double>(a.strides[i]);
    (reach < 0 ? lo : hi) += reach;
  }
  return {lo, hi};
}

// `out` must not share memory with an input: the kernels read the inputs while other threads write
// `out`, so an overlap would silently mix written values into the input. Checked last, by the *_cpu
// entry points (host memory; the CUDA path's test doubles share one fake address).
void check_no_overlap(const Array& out, std::initializer_list<const Array*> inputs) {
  if (out.numel() == 0) return;
  const auto o = byte_span(out);
  for (const Array* in : inputs) {
    if (in == nullptr || in->numel() == 0) continue;
    const auto i = byte_span(*in);
    if (o.first < i.second && i.first < o.second) {
      throw py::value_error(fmt(out.name, std::string("shares memory with ") + in->name +
                                              ": the output must not overlap an input"));
    }
  }
}

FloatType float_type(const Array& a) { return a.dtype == DType::kFloat16 ? FloatType::kFloat16 : FloatType::kFloat32; }

// ---- warp ---------------------------------------------------------------------------------------

// Which sub-pixel arithmetic matches the cv2 in this process (see warp.h): OpenCV 5 computes
// coordinates in float, 4.x in 1/32-px fixed point. Without cv2, the 4.x model (what the
// official ViTPose results were produced with).
WarpCoords installed_opencv_coords() {
  static const WarpCoords coords = [] {
    try {
      const std::string version = py::module_::import("cv2").attr("__version__").cast<std::string>();
      return std::stoi(version.substr(0, version.find('.'))) >= 5 ? WarpCoords::kFloat : WarpCoords::kFixed;
    } catch (const std::exception&) {
      PyErr_Clear();
      return WarpCoords::kFixed;
    }
  }();
  return coords;
}

WarpCoords parse_coords(const std::string& coords) {
  if (coords == "auto") return installed_opencv_coords();
  if (coords == "fixed") return WarpCoords::kFixed;
  if (coords == "float") return WarpCoords::kFloat;
  throw py::value_error("coords: expected 'auto', 'fixed' (OpenCV 4.x) or 'float' (OpenCV 5), got '" + coords + "'");
}

Normalize parse_normalize(const std::string& normalize) {
  if (normalize == "imagenet") return Normalize::kImageNet;
  if (normalize == "yolo") return Normalize::kUnit;
  if (normalize == "yolox") return Normalize::kRaw;
  if (normalize == "rtmdet") return Normalize::kMeanStd;
  throw py::value_error("normalize: expected 'imagenet' (the pose crop), 'yolo', 'yolox' or 'rtmdet', got '" +
                        normalize + "'");
}

// letterbox: None, or (x0, y0, x1, y1, pad): the image region of the output and the pad level.
Letterbox parse_letterbox(const py::object& letterbox, int64_t out_h, int64_t out_w, bool flip) {
  Letterbox l{false, 0, 0, 0, 0, 0};
  if (letterbox.is_none()) return l;
  const std::string expected = "expected None or (x0, y0, x1, y1, pad) ints with 0 <= x0 <= x1 <= out width (" +
                               std::to_string(out_w) + "), 0 <= y0 <= y1 <= out height (" + std::to_string(out_h) +
                               ") and 0 <= pad <= 255";
  if (!py::isinstance<py::tuple>(letterbox) || py::len(letterbox) != 5) {
    throw py::value_error("letterbox: " + expected + ", got " + std::string(py::repr(letterbox)));
  }
  int64_t v[5];
  const py::tuple t = letterbox.cast<py::tuple>();
  for (int i = 0; i < 5; ++i) {
    const py::handle item = t[i];
    if (!PyLong_Check(item.ptr()) || PyBool_Check(item.ptr())) {
      throw py::value_error("letterbox: " + expected + ", got " + std::string(py::repr(letterbox)));
    }
    int overflow = 0;
    v[i] = PyLong_AsLongLongAndOverflow(item.ptr(), &overflow);
    if (overflow != 0) throw py::value_error("letterbox: " + expected + ", got " + std::string(py::repr(letterbox)));
  }
  if (!(0 <= v[0] && v[0] <= v[2] && v[2] <= out_w && 0 <= v[1] && v[1] <= v[3] && v[3] <= out_h && 0 <= v[4] &&
        v[4] <= 255)) {
    throw py::value_error("letterbox: " + expected + ", got " + std::string(py::repr(letterbox)));
  }
  if (flip) throw py::value_error("letterbox: a letterbox has no flipped copy (flip must be False)");
  l.on = true;
  l.x0 = static_cast<int>(v[0]);
  l.y0 = static_cast<int>(v[1]);
  l.x1 = static_cast<int>(v[2]);
  l.y1 = static_cast<int>(v[3]);
  l.pad = static_cast<int>(v[4]);
  return l;
}

// Any strides are accepted for the frame (mirrored, flipped, transposed, BGR->RGB, Fortran-order
// and broadcast views): the kernels read element (y, x, ch) through them, see warp.h.
WarpArgs check_warp(const Array& frame, const Array& inv, const Array& out, bool flip, const std::string& coords,
                    int threads, const std::string& normalize = "imagenet",
                    const py::object& letterbox = py::none()) {
  check_dtype(frame, {DType::kUInt8});
  check_ndim(frame, 3, "(H, W, 3)");
  if (frame.shape[2] != 3) {
    throw py::value_error(fmt("frame", "expected shape (H, W, 3), got " + shape_str(frame.shape)));
  }
  if (frame.shape[0] < 1 || frame.shape[1] < 1) {
    throw py::value_error(fmt("frame", "is empty: shape " + shape_str(frame.shape)));
  }
  if (frame.shape[0] > INT32_MAX || frame.shape[1] > INT32_MAX / 3) {
    throw py::value_error(fmt("frame", "too large: " + shape_str(frame.shape)));
  }
  check_dtype(inv, {DType::kFloat64});
  check_ndim(inv, 3, "(N, 2, 3)");
  const int64_t n = inv.shape[0];
  check_shape(inv, {n, 2, 3});
  check_dense(inv);
  check_dtype(out, {DType::kFloat32, DType::kFloat16});
  check_ndim(out, 4, "(N, 3, h, w)");
  if (out.shape[2] < 1 || out.shape[3] < 1 || out.shape[2] > INT32_MAX || out.shape[3] > INT32_MAX) {
    throw py::value_error(fmt("out", "crop size must be at least 1x1, got shape " + shape_str(out.shape)));
  }
  check_shape(out, {flip ? 2 * n : n, 3, out.shape[2], out.shape[3]},
              flip ? " (2N crops with flip=True)" : " (N crops)");
  check_dense(out);

  WarpArgs a;
  a.frame.data = static_cast<const uint8_t*>(frame.data);
  a.frame.row_stride = frame.strides[0];
  a.frame.pixel_stride = frame.strides[1];
  a.frame.channel_stride = frame.strides[2];
  a.frame.h = static_cast<int>(frame.shape[0]);
  a.frame.w = static_cast<int>(frame.shape[1]);
  a.inv = static_cast<const double*>(inv.data);
  a.n = n;
  a.out = out.data;
  a.out_type = float_type(out);
  a.out_h = static_cast<int>(out.shape[2]);
  a.out_w = static_cast<int>(out.shape[3]);
  a.flip = flip;
  a.coords = parse_coords(coords);
  a.normalize = parse_normalize(normalize);
  a.letterbox = parse_letterbox(letterbox, out.shape[2], out.shape[3], flip);
  a.threads = threads;
  return a;
}

// ---- decode -------------------------------------------------------------------------------------

DecodeMode parse_mode(const std::string& mode) {
  if (mode == "udp") return DecodeMode::kUdp;
  if (mode == "classic") return DecodeMode::kClassic;
  throw py::value_error("mode: expected 'udp' or 'classic', got '" + mode + "'");
}

DecodeArgs check_decode(const Array& hm, const Array& transforms, const Array& out, const std::string& mode,
                        const Array* flipped, const Array* flip_index, int threads) {
  check_dtype(hm, {DType::kFloat32, DType::kFloat16});
  check_ndim(hm, 4, "(N, K, H, W)");
  const int64_t n = hm.shape[0], k = hm.shape[1], h = hm.shape[2], w = hm.shape[3];
  if (h < 2 || w < 2) throw py::value_error(fmt("heatmaps", "must be at least 2x2, got shape " + shape_str(hm.shape)));
  if (h * w > kMaxMapSize || k > INT32_MAX) throw py::value_error(fmt("heatmaps", "too large: " + shape_str(hm.shape)));
  check_dense(hm);
  check_dtype(transforms, {DType::kFloat32});
  check_ndim(transforms, 2, "(N, 4)");
  check_shape(transforms, {n, 4}, " (one cx, cy, w, h row per heatmap batch entry)");
  check_dense(transforms);
  check_dtype(out, {DType::kFloat32});
  check_ndim(out, 3, "(N, K, 3)");
  check_shape(out, {n, k, 3});
  check_dense(out);
  if ((flipped == nullptr) != (flip_index == nullptr)) {
    throw py::value_error(flipped ? "flip_index: required when flipped is given" : "flip_index: given without flipped");
  }
  if (flipped) {
    if (flipped->dtype != hm.dtype) {
      throw py::type_error(fmt("flipped", std::string("expected dtype ") + dtype_name(hm.dtype) +
                                              " like heatmaps, got " + flipped->dtype_str));
    }
    check_shape(*flipped, hm.shape, " like heatmaps");
    check_dense(*flipped);
    check_dtype(*flip_index, {DType::kInt32});
    check_shape(*flip_index, {k}, " (one entry per keypoint)");
    check_dense(*flip_index);
  }
  DecodeArgs a;
  a.heatmaps = hm.data;
  a.flipped = flipped ? flipped->data : nullptr;
  a.type = float_type(hm);
  a.flip_index = flip_index ? static_cast<const int32_t*>(flip_index->data) : nullptr;
  a.transforms = static_cast<const float*>(transforms.data);
  a.out = static_cast<float*>(out.data);
  a.n = n;
  a.k = static_cast<int>(k);
  a.h = static_cast<int>(h);
  a.w = static_cast<int>(w);
  a.mode = parse_mode(mode);
  a.threads = threads;
  return a;
}

// Host-side value check (decode_cuda cannot read device memory without synchronizing; its kernel
// turns out-of-range entries into NaN keypoints instead of reading out of bounds).
void check_flip_index_values(const DecodeArgs& a) {
  for (int i = 0; i < a.k; ++i) {
    const int32_t v = a.flip_index[i];
    if (v < 0 || v >= a.k) {
      throw py::value_error("flip_index: values must be in [0, " + std::to_string(a.k) + "), got " +
                            std::to_string(v) + " at position " + std::to_string(i));
    }
  }
}

// ---- CUDA ---------------------------------------------------------------------------------------

bool cuda_available() {
#ifdef VITPOSE_TRT_WITH_CUDA
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear: no driver / no device is an answer, not an error
    return false;
  }
  return count > 0;
#else
  return false;
#endif
}

void require_cuda_build(const char* entry) {
#ifndef VITPOSE_TRT_WITH_CUDA
  throw std::runtime_error(std::string(entry) +
                           ": vitpose_trt._C was built without CUDA (no nvcc at build time, or VITPOSE_TRT_CUDA=0); "
                           "reinstall with nvcc on PATH, or use the *_cpu entry point");
#else
  (void)entry;
#endif
}

// All non-empty arrays must be device (or managed) memory on one device; returns that device.
int check_device_arrays(std::initializer_list<const Array*> arrays) {
  int device = -1;
  const Array* first = nullptr;
#ifdef VITPOSE_TRT_WITH_CUDA
  for (const Array* a : arrays) {
    if (a == nullptr || a->numel() == 0) continue;
    cudaPointerAttributes attr{};
    const cudaError_t err = cudaPointerGetAttributes(&attr, a->data);
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw py::value_error(fmt(a->name, std::string("cannot query its pointer: ") + cudaGetErrorString(err)));
    }
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) {
      throw py::value_error(fmt(a->name, "expected CUDA device memory, got a host pointer"));
    }
    if (first && attr.device != device) {
      throw py::value_error(fmt(a->name, "is on cuda:" + std::to_string(attr.device) + " but " + first->name +
                                             " is on cuda:" + std::to_string(device)));
    }
    device = attr.device;
    first = first ? first : a;
  }
  if (device < 0) CUDA_CHECK(cudaGetDevice(&device));
#else
  (void)arrays;
  (void)first;
#endif
  return device;
}

// __cuda_array_interface__ v3: a producer that names a stream may still be writing its array there.
// The kernel's stream waits for it on the device (an event; the host does not wait). 1 is the legacy
// default stream; 2 the per-thread default stream, which CUDA resolves in the calling thread (the
// producing thread's when, as usual, the producer calls us). Called after every argument check.
void wait_for_producers(std::initializer_list<const Array*> arrays, std::uintptr_t stream, int device) {
#ifdef VITPOSE_TRT_WITH_CUDA
  for (const Array* a : arrays) {
    if (a == nullptr || a->producer == 0 || a->producer == stream) continue;
    DeviceGuard guard(device);
    const cudaStream_t producer = a->producer == 1   ? cudaStreamLegacy
                                  : a->producer == 2 ? cudaStreamPerThread
                                                     : reinterpret_cast<cudaStream_t>(a->producer);
    cudaEvent_t written;
    CUDA_CHECK(cudaEventCreateWithFlags(&written, cudaEventDisableTiming));
    const cudaError_t recorded = cudaEventRecord(written, producer);
    const cudaError_t waited =
        recorded == cudaSuccess ? cudaStreamWaitEvent(reinterpret_cast<cudaStream_t>(stream), written, 0) : recorded;
    cudaEventDestroy(written);  // released once the wait is resolved; safe right after enqueueing it
    CUDA_CHECK(waited);
  }
#else
  (void)arrays;
  (void)stream;
  (void)device;
#endif
}

// ---- threads ------------------------------------------------------------------------------------

// `threads` of the *_cpu entry points: None = default_threads() (the CPUs this process may run
// on), else a positive int; 1 runs on the calling thread only.
int parse_threads(const py::object& threads) {
  if (threads.is_none()) return default_threads();
  if (!py::isinstance<py::int_>(threads) || py::isinstance<py::bool_>(threads)) {
    throw py::type_error("threads: expected None or a positive int, got " + type_name(threads));
  }
  int overflow = 0;  // an int beyond long long (2**100) is no error to cast, only one more cap
  const long long t = PyLong_AsLongLongAndOverflow(threads.ptr(), &overflow);
  if (overflow < 0 || (overflow == 0 && t < 1)) {
    throw py::value_error("threads: expected None or a positive int, got " + std::string(py::str(threads)));
  }
  return overflow > 0 ? 1024 : static_cast<int>(std::min<long long>(t, 1024));
}

// ---- entry points -------------------------------------------------------------------------------

void py_warp_cpu(const py::object& frame, const py::object& inv, const py::object& out, bool flip,
                 const std::string& coords, const py::object& threads, const std::string& normalize,
                 const py::object& letterbox) {
  const Array f = from_numpy(frame, "frame", false);
  const Array m = from_numpy(inv, "inv_matrices", false);
  const Array o = from_numpy(out, "out", true);
  const WarpArgs a = check_warp(f, m, o, flip, coords, parse_threads(threads), normalize, letterbox);
  check_no_overlap(o, {&f, &m});
  py::gil_scoped_release release;
  warp_cpu(a);
}

void py_warp_cuda(const py::object& frame, const py::object& inv, const py::object& out, bool flip,
                  std::uintptr_t stream, const std::string& coords, const std::string& normalize,
                  const py::object& letterbox) {
  const Array f = from_cuda_array_interface(frame, "frame", false);
  const Array m = from_cuda_array_interface(inv, "inv_matrices", false);
  const Array o = from_cuda_array_interface(out, "out", true);
  const WarpArgs a = check_warp(f, m, o, flip, coords, 1, normalize, letterbox);
  require_cuda_build("warp_cuda");
  const int device = check_device_arrays({&f, &m, &o});
  py::gil_scoped_release release;
  wait_for_producers({&f, &m, &o}, stream, device);
  warp_cuda(a, stream, device);
}

void py_decode_cpu(const py::object& hm, const py::object& transforms, const py::object& out, const std::string& mode,
                   const py::object& flipped, const py::object& flip_index, const py::object& threads) {
  const Array h = from_numpy(hm, "heatmaps", false);
  const Array t = from_numpy(transforms, "transforms", false);
  const Array o = from_numpy(out, "out", true);
  Array fl, fi;
  if (!flipped.is_none()) fl = from_numpy(flipped, "flipped", false);
  if (!flip_index.is_none()) fi = from_numpy(flip_index, "flip_index", false);
  const DecodeArgs a =
      check_decode(h, t, o, mode, flipped.is_none() ? nullptr : &fl, flip_index.is_none() ? nullptr : &fi,
                   parse_threads(threads));
  if (a.flip_index) check_flip_index_values(a);
  check_no_overlap(o, {&h, &t, flipped.is_none() ? nullptr : &fl, flip_index.is_none() ? nullptr : &fi});
  py::gil_scoped_release release;
  decode_cpu(a);
}

void py_decode_cuda(const py::object& hm, const py::object& transforms, const py::object& out, const std::string& mode,
                    const py::object& flipped, const py::object& flip_index, std::uintptr_t stream) {
  const Array h = from_cuda_array_interface(hm, "heatmaps", false);
  const Array t = from_cuda_array_interface(transforms, "transforms", false);
  const Array o = from_cuda_array_interface(out, "out", true);
  Array fl, fi;
  if (!flipped.is_none()) fl = from_cuda_array_interface(flipped, "flipped", false);
  if (!flip_index.is_none()) fi = from_cuda_array_interface(flip_index, "flip_index", false);
  const Array* flp = flipped.is_none() ? nullptr : &fl;
  const Array* fip = flip_index.is_none() ? nullptr : &fi;
  const DecodeArgs a = check_decode(h, t, o, mode, flp, fip, 1);
  require_cuda_build("decode_cuda");
  const int device = check_device_arrays({&h, &t, &o, flp, fip});
  py::gil_scoped_release release;
  wait_for_producers({&h, &t, &o, flp, fip}, stream, device);
  decode_cuda(a, stream, device);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "vitpose_trt C++/CUDA kernels: batched crop (warp + normalize) and heatmap decode";
  m.attr("__version__") = VITPOSE_TRT_VERSION;
#ifdef VITPOSE_TRT_WITH_CUDA
  m.attr("built_with_cuda") = true;
  m.attr("cuda_runtime_version") = CUDART_VERSION;
#else
  m.attr("built_with_cuda") = false;
  m.attr("cuda_runtime_version") = py::none();
#endif
  m.attr("cuda_architectures") = VITPOSE_TRT_CUDA_ARCHS;
  m.def("cuda_available", &cuda_available,
        "True when built with CUDA and the CUDA runtime sees at least one GPU (never raises).");
  m.def("opencv_warp_coords", [] { return installed_opencv_coords() == WarpCoords::kFloat ? "float" : "fixed"; },
        "The sub-pixel model coords='auto' resolves to: 'float' with OpenCV >= 5 in this process, else 'fixed'.");

  m.def("default_threads", &default_threads,
        "The thread count the *_cpu entry points use when threads=None: the CPUs this process may run on.");

  m.def("warp_cpu", &py_warp_cpu, py::arg("frame"), py::arg("inv_matrices"), py::arg("out"), py::arg("flip") = false,
        py::kw_only(), py::arg("coords") = "auto", py::arg("threads") = py::none(), py::arg("normalize") = "imagenet",
        py::arg("letterbox") = py::none(),
        "Crop every box: out[i] = normalized RGB of cv2.warpAffine(frame, M_i) (bilinear, zero border), "
        "out[N + i] = its horizontal flip when flip; bit-identical to vitpose_trt.crop.preprocess(impl='numpy') "
        "with OpenCV 4.x.\n\n"
        "frame: (H, W, 3) uint8 BGR, any strides (views are read in place); inv_matrices: (N, 2, 3) float64 "
        "crop -> frame (cv2.invertAffineTransform); out: (N or 2N, 3, h, w) float32 or float16, C-contiguous. "
        "coords: 'auto' (match the installed cv2), 'fixed' (OpenCV 4.x) or 'float' (OpenCV 5). "
        "threads: None (default_threads()) or a positive int; 1 = the calling thread only. Helper threads "
        "that do not get a core in time are not waited for. normalize: 'imagenet' (the pose crop: RGB, /255, "
        "ImageNet mean/std), or a detector family's: 'yolo' (RGB, /255), 'yolox' (BGR, raw levels), 'rtmdet' "
        "(BGR, mmdet's mean/std). letterbox: None, or (x0, y0, x1, y1, pad): outside that output region the "
        "level pad, inside it the frame's edge repeated (BORDER_REPLICATE), as a detector's letterbox; no flip.");
  m.def("warp_cuda", &py_warp_cuda, py::arg("frame"), py::arg("inv_matrices"), py::arg("out"), py::arg("flip"),
        py::arg("stream"), py::kw_only(), py::arg("coords") = "auto", py::arg("normalize") = "imagenet",
        py::arg("letterbox") = py::none(),
        "warp_cpu on CUDA arrays (__cuda_array_interface__, any frame strides), one kernel enqueued on "
        "`stream` (the caller's cudaStream_t as int, required: 0 means the legacy default stream); never "
        "synchronizes the host. An argument whose interface (v3) names its producer's stream is waited for "
        "on the device first.");
  m.def("decode_cpu", &py_decode_cpu, py::arg("heatmaps"), py::arg("transforms"), py::arg("out"), py::arg("mode"),
        py::arg("flipped") = py::none(), py::arg("flip_index") = py::none(), py::kw_only(),
        py::arg("threads") = py::none(),
        "Heatmaps (N, K, H, W) float32/float16 -> out (N, K, 3) float32 x, y, score in frame pixels, as "
        "vitpose_trt.decode.postprocess(impl='numpy'). mode: 'udp' | 'classic'. flipped: the flipped crops' "
        "heatmaps (same shape and dtype) with flip_index (K,) int32, for the flip test. threads: as warp_cpu.");
  m.def("decode_cuda", &py_decode_cuda, py::arg("heatmaps"), py::arg("transforms"), py::arg("out"), py::arg("mode"),
        py::arg("flipped"), py::arg("flip_index"), py::arg("stream"),
        "decode_cpu on CUDA arrays, one kernel for all N*K heatmaps enqueued on `stream` (required; "
        "flipped and flip_index may be None), after the producer streams its arguments name (as warp_cuda); "
        "never synchronizes the host. flip_index values are not checked on "
        "the host (that would synchronize): an out-of-range entry gives a NaN keypoint.");
}
