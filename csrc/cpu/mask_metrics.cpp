// CPU mask metrics: one pass over N x H x W pixels, SIMD byte counting, items shared by
// parallel_for (cpu/parallel.h).
// Mirrors cuda/mask_metrics.cu: same function names, same (mask, pixel range) decomposition.
#include "ops/mask_metrics.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/parallel.h"

namespace msrt::cpu {
namespace {

constexpr int64_t kSegment = 4096;         // pixels binarised per step (two stack buffers)
constexpr int64_t kItemPixels = 1 << 18;   // pixels per work item
constexpr int64_t kGrainPixels = 1 << 19;  // pixels per thread (~15 us)

struct Counts {
  int64_t inter = 0, a = 0, b = 0;
};

// |a & b|, |a|, |b| over `len` bytes where non-zero means inside. Zero bytes are counted in 8-bit
// lanes for at most 255 steps, then widened: 32 pixels per handful of instructions (two SSE2
// registers, or one AVX2 register in the AVX2 clone).
MSRT_SIMD_CLONES void count_bytes(const uint8_t* a, const uint8_t* b, int64_t len, Counts& c) {
  int64_t i = 0;
#if defined(__GNUC__)
  constexpr int kLanes = 32;
  typedef uint8_t vec __attribute__((vector_size(kLanes)));
  const vec zero = {};
  while (len - i >= kLanes) {
    const int64_t steps = std::min<int64_t>((len - i) / kLanes, 255);
    vec za_acc = zero, zb_acc = zero, zab_acc = zero;
    for (int64_t k = 0; k < steps; ++k, i += kLanes) {
      vec va, vb;
      std::memcpy(&va, a + i, kLanes);
      std::memcpy(&vb, b + i, kLanes);
      const vec za = (vec)(va == zero);  // 0xFF where the pixel is outside
      const vec zb = (vec)(vb == zero);
      za_acc -= za;  // subtracting 0xFF adds 1 (mod 256; at most 255 steps)
      zb_acc -= zb;
      zab_acc -= (za | zb);
    }
    int64_t za = 0, zb = 0, zab = 0;
    for (int l = 0; l < kLanes; ++l) {
      za += za_acc[l];
      zb += zb_acc[l];
      zab += zab_acc[l];
    }
    const int64_t m = steps * kLanes;
    c.a += m - za;
    c.b += m - zb;
    c.inter += m - zab;
  }
#endif
  for (; i < len; ++i) {
    const int64_t va = a[i] != 0, vb = b[i] != 0;
    c.a += va;
    c.b += vb;
    c.inter += va & vb;
  }
}

// `len` pixels of operand `op` from element offset `off` along x as 0/1 bytes: the operand's own
// memory when it already is contiguous bytes, else binarised into `buf`.
template <typename T>
MSRT_SIMD_CLONES const uint8_t* segment_bytes(const MaskOperand& op, int64_t off, int64_t len,
                                              uint8_t* buf) {
  const T* src = static_cast<const T*>(op.data) + off;
  const int64_t sx = op.stride_x;
  if constexpr (std::is_same_v<T, uint8_t>) {
    if (sx == 1) return src;
  }
  const T thr = threshold_as<T>(op.threshold);
  if (sx == 1) {
    for (int64_t i = 0; i < len; ++i) buf[i] = mask_inside(src[i], thr);
  } else {
    for (int64_t i = 0; i < len; ++i) buf[i] = mask_inside(src[i * sx], thr);
  }
  return buf;
}

// Counts of mask n over its flat pixel range [p0, p1) (row-major over h x w).
template <typename TP, typename TR>
Counts count_range(const MaskOperand& pred, const MaskOperand& target, const MaskShape& s,
                   int64_t n, int64_t p0, int64_t p1) {
  uint8_t buf_p[kSegment], buf_t[kSegment];
  Counts c;
  for (int64_t pos = p0; pos < p1;) {
    const int64_t y = pos / s.w, x = pos - y * s.w;
    const int64_t len = std::min({s.w - x, p1 - pos, kSegment});
    const uint8_t* a = segment_bytes<TP>(
        pred, n * pred.stride_n + y * pred.stride_y + x * pred.stride_x, len, buf_p);
    const uint8_t* b = segment_bytes<TR>(
        target, n * target.stride_n + y * target.stride_y + x * target.stride_x, len, buf_t);
    count_bytes(a, b, len, c);
    pos += len;
  }
  return c;
}

template <typename TP, typename TR>
void mask_counts_impl(const MaskOperand& pred, const MaskOperand& target, const MaskShape& s,
                      int64_t* counts, int num_threads) {
  const int64_t pixels = s.h * s.w;
  const int64_t per_mask = std::max<int64_t>(1, (pixels + kItemPixels - 1) / kItemPixels);
  const int64_t items = s.n * per_mask;
  std::vector<Counts> partial(static_cast<size_t>(items));
  const int64_t step = (pixels + per_mask - 1) / per_mask;
  parallel_for(items, threads_for(s.n * pixels, kGrainPixels, num_threads), [&](int64_t it) {
    const int64_t n = it / per_mask, k = it - n * per_mask;
    const int64_t p0 = std::min(pixels, k * step), p1 = std::min(pixels, p0 + step);
    partial[it] = count_range<TP, TR>(pred, target, s, n, p0, p1);
  });
  for (int64_t n = 0; n < s.n; ++n) {
    Counts c;
    for (int64_t k = 0; k < per_mask; ++k) {
      const Counts& q = partial[n * per_mask + k];
      c.inter += q.inter;
      c.a += q.a;
      c.b += q.b;
    }
    counts[3 * n + 0] = c.inter;
    counts[3 * n + 1] = c.a;
    counts[3 * n + 2] = c.b;
  }
}

}  // namespace

void mask_counts(const MaskOperand& pred_in, const MaskOperand& target_in, MaskShape shape,
                 int64_t* counts, int num_threads) {
  MaskOperand pred = pred_in, target = target_in;
  collapse_rows(shape, pred, target);
  if (shape.h * shape.w == 0) {
    std::fill(counts, counts + 3 * shape.n, int64_t{0});
    return;
  }
  with_mask_type(pred.dtype, "pred", [&](auto tp) {
    with_mask_type(target.dtype, "target", [&](auto tr) {
      mask_counts_impl<decltype(tp), decltype(tr)>(pred, target, shape, counts, num_threads);
    });
  });
}

}  // namespace msrt::cpu
