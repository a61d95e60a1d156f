// The CUDA helpers of every csrc/cuda/*.cu file: errors that become Python exceptions naming the
// call or kernel, a device guard, grid sizing and the grid-stride loop. Only .cu files include it.
//
// Conventions of the CUDA kernels: every launch and async call goes on the caller's stream (the
// `stream` argument, a cudaStream_t that came from the tensor's framework through DLPack); nothing
// allocates device memory (outputs and scratch come from the caller's framework); only calls that
// must return a value to the host (a component count, a click) synchronise that stream.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "common/checks.h"

namespace msrt::cuda::detail {

// Raises CudaError ("CUDA error in <what>: <name> (<text>)"). A non-sticky error is also cleared
// from the runtime, so the next launch check does not report it again against another kernel.
[[noreturn]] inline void fail(const char* what, cudaError_t err) {
  cudaGetLastError();
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

// Blocks for a grid-stride loop over `work` items: enough to fill any current GPU (4096 x 256
// threads), never more than the work needs, at least 1.
inline unsigned int grid_blocks(int64_t work, int threads, int64_t cap = 4096) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>(blocks, cap)));
}

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// An argmax as one 64-bit max: key = value << 32 | (2^32 - 1 - index), so the larger value wins
// and ties go to the smaller index (value and index < 2^32). An empty max is key 0.
__host__ __device__ __forceinline__ unsigned long long argmax_key(uint64_t value, int64_t index) {
  return (value << 32) | (0xffffffffull - static_cast<unsigned long long>(index));
}
__host__ __device__ __forceinline__ int64_t argmax_value(unsigned long long key) {
  return static_cast<int64_t>(key >> 32);
}
__host__ __device__ __forceinline__ int64_t argmax_index(unsigned long long key) {
  return static_cast<int64_t>(0xffffffffull - (key & 0xffffffffull));
}

// Folds every lane's key into *best: a warp reduction, then one atomicMax per warp. Every lane of
// the warp must call it (blockDim.x a multiple of 32).
__device__ __forceinline__ void warp_atomic_max(unsigned long long key, unsigned long long* best) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const unsigned long long other = __shfl_down_sync(0xffffffffu, key, offset);
    key = other > key ? other : key;
  }
  if ((threadIdx.x & 31) == 0) atomicMax(best, key);
}

}  // namespace msrt::cuda::detail

// Checks a CUDA runtime call; `what` names it in the exception message.
#define MSRT_CUDA_CHECK(expr, what)                                            \
  do {                                                                         \
    const cudaError_t msrt_err_ = (expr);                                      \
    if (msrt_err_ != cudaSuccess) ::msrt::cuda::detail::fail(what, msrt_err_); \
  } while (0)

// After every kernel launch: a bad configuration (or an earlier asynchronous fault) raises with the
// kernel's name.
#define MSRT_CUDA_CHECK_LAUNCH(kernel_name) MSRT_CUDA_CHECK(cudaGetLastError(), kernel_name)

// The grid-stride loop of every 1-D kernel: i = this thread's first item, then strides of the
// whole grid, in int64 (N x H x W may exceed 2^31).
#define MSRT_GRID_STRIDE_LOOP(i, n)                                                \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < int64_t(n); \
       i += int64_t(gridDim.x) * blockDim.x)
