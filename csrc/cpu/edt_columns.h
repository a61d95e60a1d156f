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
  if constexpr (R == Region::Set)
    return a != 0;
  else if constexpr (R == Region::FalseNegative)
    return b != 0 && a == 0;
  else
    return a != 0 && b == 0;
}

template <Region R>
inline uint64_t region_bits(const uint8_t* a, const uint8_t* b, int n) {
  const uint64_t pa = bits::nonzero_bits(a, n);
  if constexpr (R == Region::Set) return pa;
  const uint64_t pb = bits::nonzero_bits(b, n);
  if constexpr (R == Region::FalseNegative)
    return pb & ~pa;
  else
    return pa & ~pb;
}

// The part of the image a transform runs on (the whole image, or the bounding box of the region:
// every pixel outside it is a zero). zero_*: the row or column just outside that side is all
// zero (the click simulator's 1-px border, or image pixels outside the box); a zero there is
// never farther than one beyond it, so a crop gives the exact distances.
struct Grid {
  Mask2D a, b;  // crop views; b unused for Region::Set
  int64_t h = 0, w = 0;
  bool zero_top = false, zero_bottom = false, zero_left = false, zero_right = false;
  int32_t inf = 0;  // > any distance in the crop; INF^2 + W^2 < 2^31 (checked by the bindings)

  bool any_zero_side() const { return zero_top || zero_bottom || zero_left || zero_right; }
};

// Inclusive bounding box of a set of pixels (empty: y1 < 0).
struct Box {
  int64_t y0 = std::numeric_limits<int64_t>::max(), y1 = -1;
  int64_t x0 = std::numeric_limits<int64_t>::max(), x1 = -1;
  bool empty() const { return y1 < 0; }
  void add_row(int64_t y, int64_t xa, int64_t xb) {
    y0 = std::min(y0, y), y1 = std::max(y1, y);
    x0 = std::min(x0, xa), x1 = std::max(x1, xb);
  }
  void merge(const Box& o) {
    y0 = std::min(y0, o.y0), y1 = std::max(y1, o.y1);
    x0 = std::min(x0, o.x0), x1 = std::max(x1, o.x1);
  }
};

// The (h, w) view of m from (y, x).
inline Mask2D crop(const Mask2D& m, int64_t y, int64_t x, int64_t h, int64_t w) {
  Mask2D c = m;
  c.data = m.data + y * m.stride_y + x * m.stride_x;
  c.height = h;
  c.width = w;
  return c;
}

// The grid of `box` in an image of `image` size; padded: the image has a zero border (the click
// simulator), else only image pixels outside the box are zeros.
inline Grid crop_grid(const Mask2D& a, const Mask2D& b, const Box& box, bool padded) {
  Grid g;
  g.h = box.y1 - box.y0 + 1;
  g.w = box.x1 - box.x0 + 1;
  g.a = crop(a, box.y0, box.x0, g.h, g.w);
  g.b = crop(b, box.y0, box.x0, g.h, g.w);
  g.zero_top = padded || box.y0 > 0;
  g.zero_bottom = padded || box.y1 < a.height - 1;
  g.zero_left = padded || box.x0 > 0;
  g.zero_right = padded || box.x1 < a.width - 1;
  g.inf = int32_t(g.h + g.w + 2);
  return g;
}

// Adds the set bits of `word` (pixels x0 .. x0 + 63 of row y) to box.
inline void add_word(Box& box, int64_t y, int64_t x0, uint64_t word) {
  if (word) box.add_row(y, x0 + bits::ctz64(word), x0 + 63 - __builtin_clzll(word));
}

// Bounding boxes of the regions R1 and R2 over rows [y0, y1) (one read of both masks).
template <Region R1, Region R2>
void region_boxes(const Mask2D& a, const Mask2D& b, int64_t y0, int64_t y1, Box* b1, Box* b2) {
  const int32_t w = int32_t(a.width);
  for (int64_t y = y0; y < y1; ++y) {
    const uint8_t* ra = a.data + y * a.stride_y;
    const uint8_t* rb = b.data + y * b.stride_y;
    for (int32_t x0 = 0; x0 < w; x0 += 64) {
      const int n = w - x0 < 64 ? int(w - x0) : 64;
      add_word(*b1, y, x0, region_bits<R1>(ra + x0, rb + x0, n));
      if (b2) add_word(*b2, y, x0, region_bits<R2>(ra + x0, rb + x0, n));
    }
  }
}

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
  // gl: the forward sweep's (h, w) int32 buffer, rows `ld` elements apart.
  ColumnSweep(const Grid& gr, int32_t* gl, int64_t ld, int strips) : gr_(gr), gl_(gl), ld_(ld) {
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
      int32_t* g = gl_ + y * ld_;
      const int32_t yi = int32_t(y);
      if (y == y0_[t]) {
        for (int64_t x = 0; x < w; ++x) {
          const bool in = in_region<R>(ra[x], rb[x]);
          g[x] = in ? gr_.inf : 0;
          first[x] = std::min(first[x], in ? kNone : yi);
        }
      } else {
        const int32_t* gp = g - ld_;
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
    const int32_t far_above = gr_.zero_top ? -1 : -gr_.inf;
    const int32_t far_below = gr_.zero_bottom ? int32_t(gr_.h) : int32_t(gr_.h) + gr_.inf;
    bool any_zero = false;
    std::vector<int32_t> cur(size_t(w), far_above);
    for (int t = 0; t < strips_; ++t) {
      int32_t* ab = &above_[size_t(t) * w];
      const int32_t last = int32_t(y0_[t + 1] - 1);
      const int32_t* g = gl_ + last * ld_;
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
      const int32_t* gy = gl_ + y * ld_;
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
  int64_t ld_;
  int strips_ = 1;
  std::vector<int64_t> y0_;
  std::vector<int32_t> above_, below_;  // (strips, W)
};

}  // namespace msrt::cpu::edt
