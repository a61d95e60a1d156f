// A borrowed, framework-free view of an n-d array (NumPy buffer or DLPack tensor).
// bindings.cpp builds these; kernels in cpu/ and cuda/ only ever see raw pointers and sizes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/checks.h"

namespace msrt {

enum class Device { CPU, CUDA };

enum class DType { Bool, UInt8, Int32, Int64, Float32, Float64, Float16, Other };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::Bool: return "bool";
    case DType::UInt8: return "uint8";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Float16: return "float16";
    default: return "unsupported dtype";
  }
}

struct TensorView {
  void* data = nullptr;
  Device device = Device::CPU;
  int device_id = 0;
  DType dtype = DType::Other;
  std::vector<int64_t> shape;    // elements
  std::vector<int64_t> strides;  // elements (not bytes)
  void* stream = nullptr;        // cudaStream_t the producer asked us to use (CUDA only)
  bool writable = true;          // false for read-only NumPy buffers

  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  int64_t numel() const {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    return n;
  }
  bool is_contiguous() const {
    int64_t expected = 1;
    for (int64_t i = ndim() - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != expected) return false;
      expected *= shape[i];
    }
    return true;
  }
  std::string describe() const {
    std::string s = std::to_string(ndim()) + "-D " + dtype_name(dtype) + " [";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
    return s + "] on " + (device == Device::CPU ? "cpu" : "cuda:" + std::to_string(device_id));
  }
  template <typename T>
  T* ptr() const {
    return static_cast<T*>(data);
  }
};

// Common argument checks; `name` is the Python argument name used in the message.
inline void check_ndim(const TensorView& t, const char* name, int64_t lo, int64_t hi) {
  MSRT_CHECK(t.ndim() >= lo && t.ndim() <= hi, name, " must be ",
             (lo == hi ? std::to_string(lo) : std::to_string(lo) + "-D to " + std::to_string(hi)),
             "-D, got ", t.describe());
}
inline void check_dtype(const TensorView& t, const char* name, DType want) {
  MSRT_CHECK(t.dtype == want, name, " must be ", dtype_name(want), ", got ", t.describe());
}
inline void check_contiguous(const TensorView& t, const char* name) {
  MSRT_CHECK(t.is_contiguous(), name, " must be C-contiguous, got strides that are not (",
             t.describe(), ")");
}
inline void check_shape(const TensorView& t, const char* name, std::vector<int64_t> want,
                        const char* expected) {
  MSRT_CHECK(t.shape == want, name, " must be ", expected, ", got ", t.describe());
}
inline void check_writable(const TensorView& t, const char* name) {
  MSRT_CHECK(t.writable, name, " must be writable, got a read-only array");
}
inline void check_same_device(const TensorView& a, const char* an, const TensorView& b,
                              const char* bn) {
  MSRT_CHECK(a.device == b.device && a.device_id == b.device_id, an, " and ", bn,
             " must be on the same device, got ", a.describe(), " and ", b.describe());
}

}  // namespace msrt
