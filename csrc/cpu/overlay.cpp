// CPU overlay rendering: one view row at a time (ranges of rows shared by parallel_for): copy the
// row, then blend the covered pixels of the content box through a per-channel lookup table.
// Mirrors cuda/overlay.cu.
#include "ops/overlay.h"

#include <cstring>
#include <vector>

#include "cpu/parallel.h"

namespace msrt::cpu {
namespace {

void copy_row(const OverlayArgs& a, int64_t y, uint8_t* dst) {
  const uint8_t* src = a.view + y * a.view_sy;
  if (a.view_sx == 3 && a.view_sc == 1) {
    std::memcpy(dst, src, static_cast<size_t>(a.view_w * 3));
    return;
  }
  const int64_t w = a.view_w, sx = a.view_sx, sc = a.view_sc;
  for (int64_t x = 0; x < w; ++x)
    for (int c = 0; c < 3; ++c) dst[3 * x + c] = src[x * sx + c * sc];
}

// Blends the covered pixels of one view row (already copied into dst). Branch-free: the row's
// coverage is gathered into a byte mask first, then every byte of the box is blended in 16-bit
// lanes and selected, which vectorises (SSE2/AVX2) and does not mispredict on noisy masks.
MSRT_SIMD_CLONES void blend_row(const OverlayArgs& a, int64_t y, const int64_t* mask_off,
                                const uint16_t* __restrict color_term, uint8_t* __restrict cover,
                                uint8_t* __restrict dst) {
  // Locals, not a.*: stores through uint8_t pointers may alias `a` as far as the compiler knows.
  const int64_t box_w = a.box_w;
  const uint8_t* m = a.mask + nearest_source(y - a.y0, a.mask_h, a.box_h) * a.mask_sy;
  for (int64_t x = 0; x < box_w; ++x) {
    const uint8_t c = m[mask_off[x]] != 0 ? 0xFF : 0x00;
    cover[3 * x] = cover[3 * x + 1] = cover[3 * x + 2] = c;
  }
  uint8_t* __restrict px = dst + 3 * a.x0;
  const uint16_t keep = static_cast<uint16_t>(256 - a.alpha_weight);
  const int64_t bytes = 3 * box_w;
  for (int64_t i = 0; i < bytes; ++i) {
    const uint16_t v = px[i];
    // == blend_channel(v, color, alpha): color_term = color * alpha + 128; fits 16 bits
    const uint8_t b = static_cast<uint8_t>((v * keep + color_term[i]) >> 8);
    px[i] = static_cast<uint8_t>((b & cover[i]) | (px[i] & ~cover[i]));
  }
}

}  // namespace

void render_overlay(const OverlayArgs& a, int num_threads) {
  std::vector<int64_t> mask_off(static_cast<size_t>(a.box_w));
  for (int64_t x = 0; x < a.box_w; ++x)
    mask_off[x] = nearest_source(x, a.mask_w, a.box_w) * a.mask_sx;
  std::vector<uint16_t> color_term(static_cast<size_t>(3 * a.box_w));  // c * a + 128, per byte
  for (int64_t i = 0; i < 3 * a.box_w; ++i)
    color_term[i] = static_cast<uint16_t>(a.color[i % 3] * a.alpha_weight + 128);
  const int threads = threads_for(a.view_h * a.view_w, int64_t{1} << 16, num_threads);  // ~70 us
  parallel_ranges(a.view_h, threads, 4, [&](int64_t y0, int64_t y1) {
    std::vector<uint8_t> cover(static_cast<size_t>(3 * a.box_w));
    for (int64_t y = y0; y < y1; ++y) {
      uint8_t* dst = a.out + y * a.view_w * 3;
      copy_row(a, y, dst);
      if (y >= a.y0 && y < a.y0 + a.box_h)
        blend_row(a, y, mask_off.data(), color_term.data(), cover.data(), dst);
    }
  });
}

}  // namespace msrt::cpu
