// Pass 1 of the CUDA distance transform (cuda/distance.cu), mirroring cpu/edt_columns.h: the
// region definitions and the column kernel.
#pragma once

#include <climits>

#include "ops/components.h"  // Mask2D, mask_at

namespace msrt::cuda::edt {

constexpr int kCols = 32, kSegs = 32;  // edt_columns: blockDim (32 columns, 32 row segments)

enum Region : int { kSet = 0, kFalseNegative = 1, kFalsePositive = 2 };

template <int R>
__device__ __forceinline__ bool in_region(const Mask2D& a, const Mask2D& b, int64_t y, int64_t x) {
  if (R == kSet) return mask_at(a, y, x);
  const bool p = mask_at(a, y, x), g = mask_at(b, y, x);
  return R == kFalseNegative ? (g && !p) : (p && !g);
}

// g (H, W) int32. border_zero: rows -1 and H are zero. *any_zero = 1 when the region's
// complement has a pixel (never cleared here).
template <int R>
__global__ void __launch_bounds__(kCols* kSegs)
    edt_columns(Mask2D a, Mask2D b, bool border_zero, int inf, int* g, int* any_zero) {
  __shared__ int first[kSegs][kCols], last[kSegs][kCols];
  const int64_t h = a.height, w = a.width;
  const int64_t seg = (h + kSegs - 1) / kSegs;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t n_blocks = (w + kCols - 1) / kCols;
  for (int64_t blk = blockIdx.x; blk < n_blocks; blk += gridDim.x) {
    const int64_t x = blk * kCols + tx;
    const int64_t y0 = min(h, ty * seg), y1 = min(h, y0 + seg);
    const bool column = x < w;
    int f = INT_MAX, l = INT_MIN;
    if (column) {
      for (int64_t y = y0; y < y1; ++y) {
        if (!in_region<R>(a, b, y, x)) {
          f = min(f, int(y));
          l = int(y);
        }
      }
    }
    first[ty][tx] = f;
    last[ty][tx] = l;
    __syncthreads();
    if (column) {
      int above = border_zero ? -1 : -inf;  // last zero row above the segment
      for (int s = ty - 1; s >= 0; --s) {
        if (last[s][tx] != INT_MIN) {
          above = last[s][tx];
          break;
        }
      }
      int below = border_zero ? int(h) : int(h) + inf;  // first zero row below it
      for (int s = ty + 1; s < kSegs; ++s) {
        if (first[s][tx] != INT_MAX) {
          below = first[s][tx];
          break;
        }
      }
      if (f != INT_MAX) *any_zero = 1;
      int zero = above;
      for (int64_t y = y0; y < y1; ++y) {
        if (!in_region<R>(a, b, y, x)) zero = int(y);
        g[y * w + x] = min(int(y) - zero, inf);
      }
      zero = below;
      for (int64_t y = y1 - 1; y >= y0; --y) {
        if (!in_region<R>(a, b, y, x)) zero = int(y);
        int* p = g + y * w + x;
        *p = min(*p, zero - int(y));
      }
    }
    __syncthreads();  // first/last are reused by the block's next columns
  }
}

}  // namespace msrt::cuda::edt
