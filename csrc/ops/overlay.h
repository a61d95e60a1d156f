// Overlay rendering: the observation image of PROTOCOL.md. The (H, W) mask is resized by nearest
// neighbour at pixel centres into content_box of the (Vh, Vw, 3) view, in exact integers, and
// covered pixels are blended with a colour in 8-bit fixed point. Spec: reference.render_overlay.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace msrt {

struct OverlayArgs {
  const uint8_t* view = nullptr;  // (view_h, view_w, 3), element strides below
  int64_t view_h = 0, view_w = 0, view_sy = 0, view_sx = 3, view_sc = 1;
  const uint8_t* mask = nullptr;  // (mask_h, mask_w) bool/uint8, non-zero = covered
  int64_t mask_h = 0, mask_w = 0, mask_sy = 0, mask_sx = 1;
  int64_t x0 = 0, y0 = 0, box_w = 0, box_h = 0;  // content box inside the view
  int32_t color[3] = {0, 255, 0};                // 0..255
  int32_t alpha_weight = 128;                    // round(256 alpha), 0..256
  uint8_t* out = nullptr;                        // (view_h, view_w, 3) contiguous
};

// Source index of destination index d when resizing src_size -> dst_size by nearest neighbour at
// pixel centres: floor((d + 0.5) * src / dst), in integers.
MSRT_HD int64_t nearest_source(int64_t d, int64_t src_size, int64_t dst_size) {
  return ((2 * d + 1) * src_size) / (2 * dst_size);
}

// (v (256 - a) + c a + 128) >> 8: alpha blending in 8-bit fixed point, rounding half up.
MSRT_HD uint8_t blend_channel(int32_t v, int32_t c, int32_t a) {
  return static_cast<uint8_t>((v * (256 - a) + c * a + 128) >> 8);
}

namespace cpu {
// num_threads <= 0: cpu/parallel.h's default. Integer arithmetic: identical for any count.
void render_overlay(const OverlayArgs& args, int num_threads);
}  // namespace cpu

#ifdef MSRT_WITH_CUDA
namespace cuda {
void render_overlay(const OverlayArgs& args, int device, void* stream);
}  // namespace cuda
#endif

}  // namespace msrt
