// CUDA overlay rendering: one thread per view pixel (grid-stride), copy or blend its 3 channels.
// Mirrors cpu/overlay.cpp (same nearest_source and blend_channel).
#include "common/cuda_utils.cuh"
#include "ops/overlay.h"

namespace msrt::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) blend_pixels(OverlayArgs a) {
  const int64_t total = a.view_h * a.view_w;
  MSRT_GRID_STRIDE_LOOP(i, total) {
    const int64_t y = i / a.view_w, x = i - y * a.view_w;
    const uint8_t* src = a.view + y * a.view_sy + x * a.view_sx;
    uint8_t* dst = a.out + 3 * i;
    const int64_t bx = x - a.x0, by = y - a.y0;
    bool covered = false;
    if (bx >= 0 && bx < a.box_w && by >= 0 && by < a.box_h) {
      const int64_t my = nearest_source(by, a.mask_h, a.box_h);
      const int64_t mx = nearest_source(bx, a.mask_w, a.box_w);
      covered = a.mask[my * a.mask_sy + mx * a.mask_sx] != 0;
    }
    for (int c = 0; c < 3; ++c) {
      const uint8_t v = src[c * a.view_sc];
      dst[c] = covered ? blend_channel(v, a.color[c], a.alpha_weight) : v;
    }
  }
}

}  // namespace

void render_overlay(const OverlayArgs& a, int device, void* stream_ptr) {
  const int64_t total = a.view_h * a.view_w;
  if (total == 0) return;
  detail::DeviceGuard guard(device);
  const cudaStream_t stream = detail::as_stream(stream_ptr);
  blend_pixels<<<detail::grid_blocks(total, kThreads), kThreads, 0, stream>>>(a);
  MSRT_CUDA_CHECK_LAUNCH("render_overlay (blend_pixels kernel)");
}

}  // namespace msrt::cuda
