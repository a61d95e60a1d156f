// CUDA mask metrics: one pass over N x H x W pixels; per-thread counts, warp-shuffle and shared
// memory reduction, one 64-bit atomicAdd per block and counter. Mirrors cpu/mask_metrics.cpp:
// same function names, same (mask, pixel range) decomposition (blockIdx.y = mask).
#include "common/cuda_utils.cuh"
#include "ops/mask_metrics.h"

namespace msrt::cuda {
namespace {

constexpr int kThreads = 256;

struct Counts {
  unsigned long long inter, a, b;
};

__device__ __forceinline__ unsigned long long warp_sum(unsigned long long v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// Grid-stride over the flat pixels [0, h*w) of mask blockIdx.y.
template <typename TP, typename TR>
__global__ void __launch_bounds__(kThreads)
    count_range(const TP* __restrict__ pred, MaskOperand pred_op, const TR* __restrict__ target,
                MaskOperand target_op, MaskShape s, unsigned long long* __restrict__ counts) {
  const int64_t n = blockIdx.y;
  const int64_t pixels = s.h * s.w;
  const TP thr_p = threshold_as<TP>(pred_op.threshold);
  const TR thr_t = threshold_as<TR>(target_op.threshold);
  const TP* p = pred + n * pred_op.stride_n;
  const TR* t = target + n * target_op.stride_n;
  Counts c = {0, 0, 0};
  MSRT_GRID_STRIDE_LOOP(pos, pixels) {
    int64_t y = 0, x = pos;
    if (s.h != 1) {
      y = pos / s.w;
      x = pos - y * s.w;
    }
    const bool a = mask_inside(p[y * pred_op.stride_y + x * pred_op.stride_x], thr_p);
    const bool b = mask_inside(t[y * target_op.stride_y + x * target_op.stride_x], thr_t);
    c.a += a;
    c.b += b;
    c.inter += a && b;
  }
  // Block reduction: warps first, then the first warp over the per-warp sums.
  __shared__ Counts warp_counts[kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  c.inter = warp_sum(c.inter);
  c.a = warp_sum(c.a);
  c.b = warp_sum(c.b);
  if (lane == 0) warp_counts[warp] = c;
  __syncthreads();
  if (warp == 0) {
    c = lane < kThreads / 32 ? warp_counts[lane] : Counts{0, 0, 0};
    c.inter = warp_sum(c.inter);
    c.a = warp_sum(c.a);
    c.b = warp_sum(c.b);
    if (lane == 0) {
      atomicAdd(&counts[3 * n + 0], c.inter);
      atomicAdd(&counts[3 * n + 1], c.a);
      atomicAdd(&counts[3 * n + 2], c.b);
    }
  }
}

template <typename TP, typename TR>
void mask_counts_impl(const MaskOperand& pred, const MaskOperand& target, const MaskShape& s,
                      int64_t* counts, cudaStream_t stream) {
  const int64_t pixels = s.h * s.w;
  // Enough blocks to fill the GPU for one mask; more masks add blocks along y.
  const unsigned int bx = detail::grid_blocks(pixels, kThreads, 1024);
  const dim3 grid(bx, static_cast<unsigned int>(s.n));
  count_range<TP, TR><<<grid, kThreads, 0, stream>>>(static_cast<const TP*>(pred.data), pred,
                                                     static_cast<const TR*>(target.data), target, s,
                                                     reinterpret_cast<unsigned long long*>(counts));
  MSRT_CUDA_CHECK_LAUNCH("mask_counts (count_range kernel)");
}

}  // namespace

void mask_counts(const MaskOperand& pred_in, const MaskOperand& target_in, MaskShape shape,
                 int64_t* counts, int device, void* stream_ptr) {
  static_assert(sizeof(unsigned long long) == sizeof(int64_t), "64-bit atomics on int64 counts");
  MaskOperand pred = pred_in, target = target_in;
  collapse_rows(shape, pred, target);
  MSRT_CHECK(shape.n <= 65535, "pred must hold at most 65535 masks on CUDA, got ", shape.n);
  detail::DeviceGuard guard(device);
  const cudaStream_t stream = detail::as_stream(stream_ptr);
  if (shape.n == 0) return;
  MSRT_CUDA_CHECK(cudaMemsetAsync(counts, 0, sizeof(int64_t) * 3 * shape.n, stream),
                  "mask_counts (cudaMemsetAsync of counts)");
  if (shape.h * shape.w == 0) return;
  with_mask_type(pred.dtype, "pred", [&](auto tp) {
    with_mask_type(target.dtype, "target", [&](auto tr) {
      mask_counts_impl<decltype(tp), decltype(tr)>(pred, target, shape, counts, stream);
    });
  });
}

}  // namespace msrt::cuda
