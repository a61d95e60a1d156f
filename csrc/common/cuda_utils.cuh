// CUDA helpers for csrc/cuda/*.cu: error checks that become Python exceptions naming the kernel,
// a device guard, and grid-stride launch sizing. Only .cu files include this header.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "common/checks.h"

namespace msrt::cuda_detail {

[[noreturn]] inline void fail(const char* what, cudaError_t err) {
  throw CudaError(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(err) + " (" +
                  cudaGetErrorString(err) + ")");
}

// Makes `device` current for the scope (kernels must run on the device that owns the memory).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != device) {
      const cudaError_t err = cudaSetDevice(device);
      if (err != cudaSuccess) fail("cudaSetDevice", err);
    }
  }
  ~DeviceGuard() {
    int now = -1;
    if (previous_ >= 0 && cudaGetDevice(&now) == cudaSuccess && now != previous_)
      cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = -1;
};

// Blocks for a grid-stride loop over `work` items: enough to fill the GPU, never more than needed.
inline unsigned int grid_blocks(int64_t work, int threads, int64_t cap = 4096) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, cap)));
}

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace msrt::cuda_detail

// Checks a CUDA runtime call; `what` names it in the exception message.
#define MSRT_CUDA_CHECK(expr, what)                                       \
  do {                                                                    \
    const cudaError_t msrt_err_ = (expr);                                 \
    if (msrt_err_ != cudaSuccess) ::msrt::cuda_detail::fail(what, msrt_err_); \
  } while (0)

// After every kernel launch: a bad configuration or a sticky error raises with the kernel's name.
#define MSRT_CUDA_CHECK_LAUNCH(kernel_name) MSRT_CUDA_CHECK(cudaGetLastError(), kernel_name)
