// CPU mask post-processing: horizontal_pass into a float64 row buffer, then vertical_pass that
// writes logits and masks; each pass shares ranges of rows by parallel_for (cpu/parallel.h), and
// each output value is computed by the same arithmetic whatever the thread count. Mirrors
// cuda/postprocess.cu.
#include "ops/postprocess.h"

#include <algorithm>
#include <vector>

#include "cpu/parallel.h"

namespace msrt::cpu {
namespace {

// Per output index along one axis: K taps (zero-weight padded), source offsets and weights.
struct AxisTable {
  int k = 1;
  std::vector<int64_t> off;  // (size, k) source element offsets
  std::vector<double> w;     // (size, k)
};

// The non-zero composed taps of one output index, in slot order.
int nonzero_taps(const Taps& t, int64_t* idx, double* w) {
  int n = 0;
  for (int k = 0; k < 4; ++k) {
    if (t.w[k] != 0.0) {
      idx[n] = t.idx[k];
      w[n] = t.w[k];
      ++n;
    }
  }
  return n;  // >= 1: the weights sum to 1
}

AxisTable axis_table(int64_t low, int64_t mid, int64_t crop, int64_t out, int64_t stride) {
  std::vector<int64_t> idx(static_cast<size_t>(4 * out));
  std::vector<double> w(static_cast<size_t>(4 * out));
  std::vector<int> n(static_cast<size_t>(out));
  AxisTable t;
  for (int64_t o = 0; o < out; ++o) {
    n[o] = nonzero_taps(composed_taps(low, mid, crop, out, o), &idx[4 * o], &w[4 * o]);
    t.k = std::max(t.k, n[o]);
  }
  t.off.assign(static_cast<size_t>(out * t.k), 0);
  t.w.assign(static_cast<size_t>(out * t.k), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    for (int i = 0; i < t.k; ++i) {
      const int j = i < n[o] ? i : 0;  // padding taps re-read tap 0 with weight 0
      t.off[o * t.k + i] = idx[4 * o + j] * stride;
      t.w[o * t.k + i] = i < n[o] ? w[4 * o + i] : 0.0;
    }
  }
  return t;
}

// T[X] = sum_k w(X)_k * src[off(X)_k] for one low-res row.
template <int K>
MSRT_SIMD_CLONES void horizontal_row(const float* src, const AxisTable& cols, int64_t out_w,
                                     double* dst) {
  const int64_t* off = cols.off.data();
  const double* w = cols.w.data();
  for (int64_t x = 0; x < out_w; ++x) {
    double acc = w[x * K] * static_cast<double>(src[off[x * K]]);
    for (int k = 1; k < K; ++k) acc += w[x * K + k] * static_cast<double>(src[off[x * K + k]]);
    dst[x] = acc;
  }
}

void horizontal_pass(const PostprocessArgs& a, const float* src_mask, const AxisTable& cols,
                     int64_t j0, int64_t j_begin, int64_t j_end, double* t) {
  for (int64_t j = j_begin; j < j_end; ++j) {
    const float* src = src_mask + (j0 + j) * a.stride_y;
    double* dst = t + j * a.out_w;
    switch (cols.k) {
      case 1: horizontal_row<1>(src, cols, a.out_w, dst); break;
      case 2: horizontal_row<2>(src, cols, a.out_w, dst); break;
      case 3: horizontal_row<3>(src, cols, a.out_w, dst); break;
      default: horizontal_row<4>(src, cols, a.out_w, dst); break;
    }
  }
}

// out[X] = sum_k w_k * T[row_k][X]; logits (optional) and mask = value > threshold.
template <int K, bool kLogits>
MSRT_SIMD_CLONES void vertical_row(const double* const* r, const double* w, int64_t out_w,
                                   float thr, float* __restrict logits, uint8_t* __restrict masks) {
  const double* __restrict r0 = r[0];
  const double* __restrict r1 = r[K > 1 ? 1 : 0];
  const double* __restrict r2 = r[K > 2 ? 2 : 0];
  const double* __restrict r3 = r[K > 3 ? 3 : 0];
  const double w0 = w[0], w1 = K > 1 ? w[1] : 0.0, w2 = K > 2 ? w[2] : 0.0, w3 = K > 3 ? w[3] : 0.0;
  for (int64_t x = 0; x < out_w; ++x) {
    double v = w0 * r0[x];
    if (K > 1) v += w1 * r1[x];
    if (K > 2) v += w2 * r2[x];
    if (K > 3) v += w3 * r3[x];
    const float f = static_cast<float>(v);
    if (kLogits) logits[x] = f;
    masks[x] = static_cast<uint8_t>(f > thr);
  }
}

template <bool kLogits>
void vertical_pass(const PostprocessArgs& a, int64_t n, const double* t, int64_t j0,
                   int64_t y_begin, int64_t y_end) {
  for (int64_t y = y_begin; y < y_end; ++y) {
    int64_t idx[4];
    double w[4];
    const int n_taps = nonzero_taps(composed_taps(a.h, a.in_h, a.crop_h, a.out_h, y), idx, w);
    const double* r[4];
    for (int k = 0; k < n_taps; ++k) r[k] = t + (idx[k] - j0) * a.out_w;
    const int64_t o = (n * a.out_h + y) * a.out_w;
    float* lo = kLogits ? a.out_logits + o : nullptr;
    uint8_t* mo = a.out_masks + o;
    const float thr = static_cast<float>(a.threshold);
    switch (n_taps) {
      case 1: vertical_row<1, kLogits>(r, w, a.out_w, thr, lo, mo); break;
      case 2: vertical_row<2, kLogits>(r, w, a.out_w, thr, lo, mo); break;
      case 3: vertical_row<3, kLogits>(r, w, a.out_w, thr, lo, mo); break;
      default: vertical_row<4, kLogits>(r, w, a.out_w, thr, lo, mo); break;
    }
  }
}

}  // namespace

void postprocess_masks(const PostprocessArgs& a, int num_threads) {
  if (a.n == 0 || a.out_h == 0 || a.out_w == 0) return;
  int64_t j0, j1;
  tap_range(a.h, a.in_h, a.crop_h, a.out_h, j0, j1);
  const int64_t rows = j1 - j0 + 1;
  const AxisTable cols = axis_table(a.w, a.in_w, a.crop_w, a.out_w, a.stride_x);
  std::vector<double> t(static_cast<size_t>(rows * a.out_w));
  const int threads = threads_for(a.out_h * a.out_w, int64_t{1} << 16, num_threads);  // ~40 us
  for (int64_t n = 0; n < a.n; ++n) {
    const float* src_mask = a.logits + n * a.stride_n;
    parallel_ranges(rows, threads, 4, [&](int64_t j_begin, int64_t j_end) {
      horizontal_pass(a, src_mask, cols, j0, j_begin, j_end, t.data());
    });
    parallel_ranges(a.out_h, threads, 4, [&](int64_t y_begin, int64_t y_end) {
      if (a.out_logits != nullptr) {
        vertical_pass<true>(a, n, t.data(), j0, y_begin, y_end);
      } else {
        vertical_pass<false>(a, n, t.data(), j0, y_begin, y_end);
      }
    });
  }
}

}  // namespace msrt::cpu
