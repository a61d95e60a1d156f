// Device helpers of cuda/components.cu: the lock-free union-find on a parent array (shared or
// global memory) and an exclusive scan over a block of 256 threads.
#pragma once

#include <cuda_runtime.h>

namespace msrt::cuda::detail {

constexpr int kScanThreads = 256;

__device__ __forceinline__ int find_root(const int* parent, int x) {
  const volatile int* p = parent;  // other threads relink concurrently
  int up = p[x];
  while (up != x) {
    x = up;
    up = p[x];
  }
  return x;
}

// Links the roots of a and b, the larger under the smaller; retries when another thread moved a
// root first (Playne & Hawick's lock-free union).
__device__ inline void unite(int* parent, int a, int b) {
  bool done;
  do {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a < b) {
      const int old = atomicMin(parent + b, a);
      done = old == b;
      b = old;
    } else if (b < a) {
      const int old = atomicMin(parent + a, b);
      done = old == a;
      a = old;
    } else {
      done = true;
    }
  } while (!done);
}

// Exclusive scan over a 1-D block of kScanThreads threads; *total = the block's sum.
__device__ inline int block_exclusive_scan(int v, int* total) {
  __shared__ int warp_base[kScanThreads / 32];
  __shared__ int block_total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int incl = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int t = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += t;
  }
  if (lane == 31) warp_base[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    const int s = lane < kScanThreads / 32 ? warp_base[lane] : 0;
    int si = s;
    for (int o = 1; o < kScanThreads / 32; o <<= 1) {
      const int t = __shfl_up_sync(0xffffffffu, si, o);
      if (lane >= o) si += t;
    }
    if (lane < kScanThreads / 32) warp_base[lane] = si - s;
    if (lane == kScanThreads / 32 - 1) block_total = si;
  }
  __syncthreads();
  const int ex = incl - v + warp_base[warp];
  *total = block_total;
  __syncthreads();  // the shared slots are reused by the next call
  return ex;
}

}  // namespace msrt::cuda::detail
