// Launch helpers shared by cuda/components.cu and cuda/distance.cu (the CUDA mirror of
// cpu/mask_bits.h): a device guard, launch-error checks that name the kernel, grid sizing for
// grid-stride loops, and strided mask reads.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "ops/components.h"  // Mask2D

namespace msrt::cuda::detail {

// Makes `device` current for the scope (the tensors' device, not whatever was current).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cudaGetDevice(&prev_);
    if (device != prev_) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(prev_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

  static void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear a non-sticky error so the next call starts clean
      throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(e));
    }
  }

 private:
  int prev_ = 0;
};

// After every launch: a configuration error (or an earlier asynchronous fault) becomes a Python
// RuntimeError that names the kernel.
inline void check_launch(const char* kernel) {
  DeviceGuard::check(cudaGetLastError(), kernel);
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Blocks for a grid-stride loop over n items (at least 1, capped: the loop covers the rest).
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > 65535 * 4 ? 65535 * 4 : b));
}

// Mask byte at (y, x) through its strides (bytes, possibly negative); non-zero = set.
__device__ __forceinline__ bool mask_at(const Mask2D& m, int64_t y, int64_t x) {
  return m.data[y * m.stride_y + x * m.stride_x] != 0;
}

}  // namespace msrt::cuda::detail
