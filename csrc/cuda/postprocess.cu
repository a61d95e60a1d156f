// CUDA mask post-processing: horizontal_pass into a float64 workspace (all masks at once), then
// vertical_pass writing logits and masks; one thread per output element, grid-stride, taps
// computed per thread by the shared composed_taps. Mirrors cpu/postprocess.cpp.
#include "common/cuda_utils.cuh"
#include "ops/postprocess.h"

namespace msrt::cuda {
namespace {

constexpr int kThreads = 256;

// sum_k w_k * value(idx_k) over the non-zero slots, in slot order, with separately rounded
// multiplies and adds (no FMA contraction): the same float64 arithmetic as the CPU kernel.
template <typename F>
__device__ __forceinline__ double tap_sum(const Taps& tap, F value) {
  double acc = 0.0;
  bool first = true;
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    if (tap.w[k] != 0.0) {
      const double term = __dmul_rn(tap.w[k], value(tap.idx[k]));
      acc = first ? term : __dadd_rn(acc, term);
      first = false;
    }
  }
  return acc;
}

// t[n][j][X] = sum_k w(X)_k * logits[n][j0 + j][idx(X)_k]
__global__ void __launch_bounds__(kThreads)
    horizontal_pass(PostprocessArgs a, int64_t j0, int64_t rows, double* __restrict__ t) {
  const int64_t total = a.n * rows * a.out_w;
  MSRT_GRID_STRIDE_LOOP(i, total) {
    const int64_t x = i % a.out_w;
    const int64_t nj = i / a.out_w;
    const int64_t j = nj % rows, n = nj / rows;
    const Taps tap = composed_taps(a.w, a.in_w, a.crop_w, a.out_w, x);
    const float* src = a.logits + n * a.stride_n + (j0 + j) * a.stride_y;
    t[i] = tap_sum(tap, [&](int64_t idx) { return static_cast<double>(src[idx * a.stride_x]); });
  }
}

// out[n][Y][X] = sum_k w(Y)_k * t[n][idx(Y)_k - j0][X]; logits (optional), mask = > threshold.
__global__ void __launch_bounds__(kThreads)
    vertical_pass(PostprocessArgs a, int64_t j0, int64_t rows, const double* __restrict__ t) {
  const int64_t total = a.n * a.out_h * a.out_w;
  MSRT_GRID_STRIDE_LOOP(i, total) {
    const int64_t x = i % a.out_w;
    const int64_t ny = i / a.out_w;
    const int64_t y = ny % a.out_h, n = ny / a.out_h;
    const Taps tap = composed_taps(a.h, a.in_h, a.crop_h, a.out_h, y);
    const double* tn = t + n * rows * a.out_w + x;
    const double v = tap_sum(tap, [&](int64_t idx) { return tn[(idx - j0) * a.out_w]; });
    const float f = static_cast<float>(v);
    if (a.out_logits != nullptr) a.out_logits[i] = f;
    a.out_masks[i] = f > static_cast<float>(a.threshold);
  }
}

}  // namespace

void postprocess_masks(const PostprocessArgs& a, double* workspace, int64_t workspace_size,
                       int device, void* stream_ptr) {
  if (a.n == 0 || a.out_h == 0 || a.out_w == 0) return;
  int64_t j0, j1;
  tap_range(a.h, a.in_h, a.crop_h, a.out_h, j0, j1);
  const int64_t rows = j1 - j0 + 1;
  MSRT_CHECK(workspace_size >= a.n * rows * a.out_w, "workspace must hold at least ",
             a.n * rows * a.out_w, " float64 values, got ", workspace_size);
  detail::DeviceGuard guard(device);
  const cudaStream_t stream = detail::as_stream(stream_ptr);
  const int64_t work1 = a.n * rows * a.out_w;
  horizontal_pass<<<detail::grid_blocks(work1, kThreads), kThreads, 0, stream>>>(a, j0, rows,
                                                                                 workspace);
  MSRT_CUDA_CHECK_LAUNCH("postprocess_masks (horizontal_pass kernel)");
  const int64_t work2 = a.n * a.out_h * a.out_w;
  vertical_pass<<<detail::grid_blocks(work2, kThreads), kThreads, 0, stream>>>(a, j0, rows,
                                                                               workspace);
  MSRT_CUDA_CHECK_LAUNCH("postprocess_masks (vertical_pass kernel)");
}

}  // namespace msrt::cuda
