// Mask post-processing: (N, h, w) low-res logits -> bilinear to the padded model input
// (in_h, in_w) -> crop [:crop_h, :crop_w] -> bilinear to (out_h, out_w) -> threshold, fused.
// Both resizes are torch's F.interpolate(mode="bilinear", align_corners=False); their composition
// is linear and separable, so every output pixel is a weighted sum of at most 4 x 4 low-res
// pixels with weights that factor into a row part and a column part (composed_taps). The
// kernels evaluate it in two passes that never materialise the (in_h, in_w) intermediate:
//   horizontal_pass: T[n][j][X] = sum_k col_w(X)_k * L[n][j][col_idx(X)_k]  (low-res rows j)
//   vertical_pass:   out[n][Y][X] = sum_k row_w(Y)_k * T[n][row_idx(Y)_k][X] ; > threshold
// in float64 from torch's float32 source indices and weights (see linear_tap), rounded once to
// float32; masks are that float32 logit > threshold (as torch / NumPy compare float32 with a
// Python float), so the returned masks always equal returned logits > threshold.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace msrt {

// One bilinear axis tap of torch's upsample (align_corners=False) for output index o.
struct LinearTap {
  int64_t i0, i1;  // source indices (i1 == i0 at the last source index)
  float w0, w1;    // weights, w0 = 1 - w1
};

MSRT_HD float fma_f32(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return fmaf(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// torch computes, in float32: scale = in / out; src = scale * (o + 0.5) - 0.5 (contracted to one
// FMA in its vectorised CPU builds and on CUDA; a separate multiply and add here would move src by
// up to 1 ulp and the result by up to ~1e-3 for non-power-of-two sizes); src < 0 -> 0;
// i0 = min(floor(src), in - 1); lambda = clamp(src - i0, 0, 1).
MSRT_HD LinearTap linear_tap(int64_t in_size, int64_t out_size, int64_t o) {
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  float src = fma_f32(scale, static_cast<float>(o) + 0.5f, -0.5f);
  src = src > 0.f ? src : 0.f;
  int64_t i0 = static_cast<int64_t>(src);  // floor (src >= 0)
  i0 = i0 < in_size - 1 ? i0 : in_size - 1;
  float lam = src - static_cast<float>(i0);
  lam = lam < 0.f ? 0.f : (lam > 1.f ? 1.f : lam);
  return {i0, i0 < in_size - 1 ? i0 + 1 : i0, 1.f - lam, lam};
}

// The composed taps of one output index along one axis: low -> mid (the padded model input) ->
// crop [:crop] -> out. Four (index, weight) slots sorted by index; equal indices are merged into
// the first slot of their run and the merged-away slots get weight 0. Fixed-index code only
// (a sorting network, no data-dependent array indexing), so it stays in registers on the GPU.
// Kernels skip zero-weight slots, so an output that lands on a source pixel reads just that one.
struct Taps {
  int64_t idx[4];
  double w[4];
};

MSRT_HD void sort_taps(Taps& t, int i, int j) {
  const bool swap = t.idx[j] < t.idx[i];
  const int64_t a = t.idx[i], b = t.idx[j];
  const double wa = t.w[i], wb = t.w[j];
  t.idx[i] = swap ? b : a;
  t.idx[j] = swap ? a : b;
  t.w[i] = swap ? wb : wa;
  t.w[j] = swap ? wa : wb;
}

MSRT_HD Taps composed_taps(int64_t low, int64_t mid, int64_t crop, int64_t out, int64_t o) {
  const LinearTap t2 = linear_tap(crop, out, o);
  const LinearTap a = linear_tap(low, mid, t2.i0);
  const LinearTap b = linear_tap(low, mid, t2.i1);
  Taps t = {{a.i0, a.i1, b.i0, b.i1},
            {double(t2.w0) * a.w0, double(t2.w0) * a.w1, double(t2.w1) * b.w0,
             double(t2.w1) * b.w1}};  // products of two floats: exact in double
  sort_taps(t, 0, 1);                 // sorting network for 4 elements
  sort_taps(t, 2, 3);
  sort_taps(t, 0, 2);
  sort_taps(t, 1, 3);
  sort_taps(t, 1, 2);
  for (int i = 3; i > 0; --i) {  // merge runs of equal indices into their first slot
    if (t.idx[i] == t.idx[i - 1]) {
      t.w[i - 1] += t.w[i];
      t.w[i] = 0.0;
    }
  }
  return t;
}

// Low-res rows [first, last] that any output row reads (before zero weights are dropped).
MSRT_HD void tap_range(int64_t low, int64_t mid, int64_t crop, int64_t out, int64_t& first,
                       int64_t& last) {
  first = linear_tap(low, mid, linear_tap(crop, out, 0).i0).i0;
  last = linear_tap(low, mid, linear_tap(crop, out, out - 1).i1).i1;
}

struct PostprocessArgs {
  const float* logits = nullptr;  // (n, h, w), element strides below
  int64_t stride_n = 0, stride_y = 0, stride_x = 1;
  int64_t n = 0, h = 0, w = 0;
  int64_t in_h = 0, in_w = 0;      // padded model input size (first resize)
  int64_t crop_h = 0, crop_w = 0;  // image inside the padding (crop), <= in_h, in_w
  int64_t out_h = 0, out_w = 0;    // original image size (second resize)
  double threshold = 0.0;       // mask = float32(value) > float32(threshold): masks == logits > thr
  float* out_logits = nullptr;  // (n, out_h, out_w) contiguous, or null for masks only
  uint8_t* out_masks = nullptr;  // (n, out_h, out_w) contiguous bool
};

namespace cpu {
// num_threads <= 0: cpu/parallel.h's default. Identical results for any count.
void postprocess_masks(const PostprocessArgs& args, int num_threads);
}  // namespace cpu

#ifdef MSRT_WITH_CUDA
namespace cuda {
// workspace: >= n * h * out_w float64 of device memory (the horizontal pass's rows).
void postprocess_masks(const PostprocessArgs& args, double* workspace, int64_t workspace_size,
                       int device, void* stream);
}  // namespace cuda
#endif

}  // namespace msrt
