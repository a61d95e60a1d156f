// Pass 1 of the CPU distance transform (cpu/distance.cpp): the region definitions and the
// column sweep. Private to cpu/distance.cpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "cpu/mask_bits.h"
#include "ops/components.h"  // Mask2D

namespace msrt::cpu::edt {

// Which pixels form the region: the mask's set pixels, or a click simulator error region.
enum class Region { Set, FalseNegative, FalsePositive };

template <Region R>
inline bool in_region(uint8_t a, uint8_t b) {  // a: mask or pred, b: gt
  if constexpr (R == Region::Set) return a != 0;
  else if constexpr (R == Region::FalseNegative) return b != 0 && a == 0;
  else return a != 0 && b == 0;
}

template <Region R>
inline uint64_t region_bits(const uint8_t* a, const uint8_t* b, int n) {
  const uint64_t pa = bits::nonzero_bits(a, n);
  if constexpr (R == Region::Set) return pa;
  const uint64_t pb = bits::nonzero_bits(b, n);
  if constexpr (R == Region::FalseNegative) return pb & ~pa;
  else return pa & ~pb;
}

struct Grid {
  Mask2D a, b;  // b unused for Region::Set
  int64_t h, w;
  bool border_zero;
  int32_t inf;  // > any in-image distance; with it INF^2 + W^2 stays < 2^31 (see bindings)
};

// ------------------------------------------------------------------ pass 1: columns

// Column distances, computed by row strips in two sweeps:
// forward (top-down) writes gl = distance to the nearest zero above within the strip, and the
// first zero row of each column in the strip; a short sequential step turns these into the last
// zero row above and the first zero row below each strip; the backward sweep (bottom-up, fused
// with the row pass) rolls the next zero row below and hands each finished row of
// g = min(gl, y - above, below - y) to the row pass while it is in cache.
template <Region R>
class ColumnSweep {
 public:
  ColumnSweep(const Grid& gr, int32_t* gl, int strips) : gr_(gr), gl_(gl) {
    const int64_t n = std::max<int64_t>(1, std::min<int64_t>(strips, gr.h));
    y0_.resize(size_t(n + 1));
    for (int64_t t = 0; t <= n; ++t) y0_[t] = gr.h * t / n;
    strips_ = int(n);
    above_.assign(size_t(n * gr.w), 0);
    below_.assign(size_t(n * gr.w), 0);
  }

  int strips() const { return strips_; }

  // Forward sweep of strip t (also leaves the strip's first zero rows in below_[t]).
  void forward(int t) {
    const int64_t w = gr_.w;
    int32_t* first = &below_[size_t(t) * w];
    std::fill(first, first + w, kNone);
    for (int64_t y = y0_[t]; y < y0_[t + 1]; ++y) {
      const uint8_t* ra = gr_.a.data + y * gr_.a.stride_y;
      const uint8_t* rb = R == Region::Set ? ra : gr_.b.data + y * gr_.b.stride_y;
      int32_t* g = gl_ + y * w;
      const int32_t yi = int32_t(y);
      if (y == y0_[t]) {
        for (int64_t x = 0; x < w; ++x) {
          const bool in = in_region<R>(ra[x], rb[x]);
          g[x] = in ? gr_.inf : 0;
          first[x] = std::min(first[x], in ? kNone : yi);
        }
      } else {
        const int32_t* gp = g - w;
        for (int64_t x = 0; x < w; ++x) {
          const bool in = in_region<R>(ra[x], rb[x]);
          g[x] = in ? std::min(gp[x] + 1, gr_.inf) : 0;
          first[x] = std::min(first[x], in ? kNone : yi);
        }
      }
    }
  }

  // After every forward(): above_[t] = last zero row above strip t (or -inf), below_[t] = first
  // zero row below it (or +inf); the zero border is the rows -1 and H. Returns whether the
  // region's complement has a pixel.
  bool combine() {
    const int64_t w = gr_.w;
    const int32_t far_above = gr_.border_zero ? -1 : -gr_.inf;
    const int32_t far_below = gr_.border_zero ? int32_t(gr_.h) : int32_t(gr_.h) + gr_.inf;
    bool any_zero = false;
    std::vector<int32_t> cur(size_t(w), far_above);
    for (int t = 0; t < strips_; ++t) {
      int32_t* ab = &above_[size_t(t) * w];
      const int32_t last = int32_t(y0_[t + 1] - 1);
      const int32_t* g = gl_ + last * w;
      for (int64_t x = 0; x < w; ++x) {
        ab[x] = cur[x];
        cur[x] = g[x] < gr_.inf ? last - g[x] : cur[x];
      }
    }
    std::fill(cur.begin(), cur.end(), far_below);
    for (int t = strips_ - 1; t >= 0; --t) {
      int32_t* be = &below_[size_t(t) * w];
      for (int64_t x = 0; x < w; ++x) {
        const int32_t first = be[x];
        be[x] = cur[x];
        cur[x] = first != kNone ? first : cur[x];
        any_zero |= first != kNone;
      }
    }
    return any_zero;
  }

  // Backward sweep of strip t: calls row(y, g) for y = last .. first row of the strip, g the
  // finished column distances of row y (valid until the next call).
  template <typename Row>
  void backward(int t, int32_t* next_zero, int32_t* g, Row&& row) const {
    const int64_t w = gr_.w;
    const int32_t* ab = &above_[size_t(t) * w];
    std::copy(&below_[size_t(t) * w], &below_[size_t(t + 1) * w], next_zero);
    for (int64_t y = y0_[t + 1] - 1; y >= y0_[t]; --y) {
      const uint8_t* ra = gr_.a.data + y * gr_.a.stride_y;
      const uint8_t* rb = R == Region::Set ? ra : gr_.b.data + y * gr_.b.stride_y;
      const int32_t* gy = gl_ + y * w;
      const int32_t yi = int32_t(y);
      for (int64_t x = 0; x < w; ++x) {
        const int32_t nz = in_region<R>(ra[x], rb[x]) ? next_zero[x] : yi;
        next_zero[x] = nz;
        g[x] = std::min(std::min(gy[x], yi - ab[x]), std::min(nz - yi, gr_.inf));
      }
      row(y, static_cast<const int32_t*>(g));
    }
  }

  int strip_of(int64_t y) const {
    int t = 0;
    while (y >= y0_[t + 1]) ++t;
    return t;
  }

 private:
  static constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
  const Grid& gr_;
  int32_t* gl_;
  int strips_ = 1;
  std::vector<int64_t> y0_;
  std::vector<int32_t> above_, below_;  // (strips, W)
};

}  // namespace msrt::cpu::edt
