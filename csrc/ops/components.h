// Connected components of a binary mask: labels 1..K in raster order of each component's first
// pixel (scipy.ndimage.label's order), per-component area and inclusive box, keep-largest,
// fill-holes and count. Spec: medsam_agent_rt/ops/reference.py (label_components, fill_holes).
#pragma once

#include <cstdint>
#include <vector>

#include "common/macros.h"

namespace msrt {

// A borrowed (H, W) mask of bytes (bool or uint8; non-zero = set). Strides are in bytes and may
// be negative. CPU kernels need stride_x == 1 (the Python layer copies other layouts).
struct Mask2D {
  const uint8_t* data = nullptr;
  int64_t height = 0, width = 0;
  int64_t stride_y = 0, stride_x = 1;
};

// Whether pixel (y, x) is set, read through the strides (the CUDA kernels' strided access).
MSRT_HD bool mask_at(const Mask2D& m, int64_t y, int64_t x) {
  return m.data[y * m.stride_y + x * m.stride_x] != 0;
}

// Per-component statistics: areas[k] and boxes[4k .. 4k+3] = (x0, y0, x1, y1) inclusive of
// label k + 1.
struct ComponentStats {
  std::vector<int64_t> areas;
  std::vector<int64_t> boxes;
};

namespace cpu {
// num_threads <= 0: cpu/parallel.h's default. Results never depend on the thread count.

// labels: (H, W) int32, C-contiguous, fully written. Returns K.
int64_t label_components(const Mask2D& mask, int connectivity, int32_t* labels,
                         ComponentStats* stats, int num_threads);
int64_t count_components(const Mask2D& mask, int connectivity, int num_threads);
// out: (H, W) bytes, 1 on the largest component (ties: lowest label), 0 elsewhere.
void keep_largest_component(const Mask2D& mask, int connectivity, uint8_t* out, int num_threads);
// out: (H, W) bytes = mask, plus background components (complementary connectivity) that do not
// touch the border and have area <= max_area (max_area < 0: no limit).
void fill_holes(const Mask2D& mask, int connectivity, int64_t max_area, uint8_t* out,
                int num_threads);
}  // namespace cpu

#ifdef MSRT_WITH_CUDA
namespace cuda {
// The same semantics on device memory: kernels run on device `device`, enqueued on `stream` (a
// cudaStream_t). Outputs and `scratch` are C-contiguous device buffers the caller allocated;
// scratch holds label_scratch_elems(H, W) int32 (8-byte aligned). The mask may have any strides.
int64_t label_scratch_elems(int64_t height, int64_t width);
// labels (H, W) int32 of the set pixels (of the zero pixels when `invert`). Returns K; the only
// call here that synchronises the stream (to read K).
int64_t label_components(const Mask2D& mask, int connectivity, bool invert, int32_t* labels,
                         int32_t* scratch, int device, void* stream);
// areas (K,) int64 and boxes (K, 4) int64 (x0, y0, x1, y1 inclusive) of labels 1..K.
void component_stats(const int32_t* labels, int64_t height, int64_t width, int64_t k,
                     int64_t* areas, int64_t* boxes, int device, void* stream);
// out (H, W) bytes = labels == argmax(areas) + 1 (ties: lowest label); all 0 when K == 0.
void keep_largest_component(const int32_t* labels, int64_t height, int64_t width,
                            const int64_t* areas, int64_t k, int32_t* scratch, uint8_t* out,
                            int device, void* stream);
// out (H, W) bytes = mask, plus the background components of `bg_labels` (labelled with the
// complementary connectivity, stats `areas`/`boxes`) that do not touch the border and have
// area <= max_area (max_area < 0: no limit).
void fill_holes(const Mask2D& mask, const int32_t* bg_labels, const int64_t* areas,
                const int64_t* boxes, int64_t max_area, uint8_t* out, int device, void* stream);
}  // namespace cuda
#endif

}  // namespace msrt
