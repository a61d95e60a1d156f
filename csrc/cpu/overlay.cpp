// CPU overlay rendering: one view row at a time (OpenMP over rows): copy the row, then blend the
// covered pixels of the content box through a per-channel lookup table. Mirrors cuda/overlay.cu.
#include "ops/overlay.h"

#include <cstring>
#include <vector>

#include "common/parallel.h"

namespace msrt::cpu {
namespace {

void copy_row(const OverlayArgs& a, int64_t y, uint8_t* dst) {
  const uint8_t* src = a.view + y * a.view_sy;
  if (a.view_sx == 3 && a.view_sc == 1) {
    std::memcpy(dst, src, static_cast<size_t>(a.view_w * 3));
    return;
  }
  for (int64_t x = 0; x < a.view_w; ++x)
    for (int c = 0; c < 3; ++c) dst[3 * x + c] = src[x * a.view_sx + c * a.view_sc];
}

void blend_row(const OverlayArgs& a, int64_t y, const int64_t* mask_off, const uint8_t* lut,
               uint8_t* dst) {
  const uint8_t* m = a.mask + nearest_source(y - a.y0, a.mask_h, a.box_h) * a.mask_sy;
  uint8_t* px = dst + 3 * a.x0;
  for (int64_t x = 0; x < a.box_w; ++x, px += 3) {
    if (m[mask_off[x]] != 0) {
      px[0] = lut[px[0]];
      px[1] = lut[256 + px[1]];
      px[2] = lut[512 + px[2]];
    }
  }
}

}  // namespace

void render_overlay(const OverlayArgs& a) {
  std::vector<int64_t> mask_off(static_cast<size_t>(a.box_w));
  for (int64_t x = 0; x < a.box_w; ++x) mask_off[x] = nearest_source(x, a.mask_w, a.box_w) * a.mask_sx;
  uint8_t lut[3 * 256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) lut[256 * c + v] = blend_channel(v, a.color[c], a.alpha_weight);
  const int threads = threads_for(a.view_h * a.view_w, int64_t{1} << 17);  // ~0.2 ms per thread
  MSRT_OMP(parallel for schedule(static) num_threads(threads) if (threads > 1))
  for (int64_t y = 0; y < a.view_h; ++y) {
    uint8_t* dst = a.out + y * a.view_w * 3;
    copy_row(a, y, dst);
    if (y >= a.y0 && y < a.y0 + a.box_h) blend_row(a, y, mask_off.data(), lut, dst);
  }
}

}  // namespace msrt::cpu
