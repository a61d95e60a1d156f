// Exact Euclidean distance transform and the click simulator of PROTOCOL.md.
// Spec: medsam_agent_rt/ops/reference.py (distance_transform, error_regions, next_click).
// Distances are sqrt(exact integer squared distance) taken in float64 and rounded once to
// float32, so every backend is bit-identical to the reference.
#pragma once

#include <cstdint>

#include "ops/components.h"  // Mask2D

namespace msrt {

struct ClickResult {
  bool found = false;  // false when pred == gt (no error pixel left)
  int64_t x = 0, y = 0;
  bool positive = false;
  float distance = 0.0f;
};

namespace cpu {
// num_threads <= 0: cpu/parallel.h's default (results never depend on it). Outputs are (H, W)
// C-contiguous float32.

// Distance of every set pixel to the nearest zero pixel; all +inf when the mask has no zero.
void distance_transform(const Mask2D& mask, float* out, int num_threads);
// Distance maps of FN = gt & ~pred and FP = pred & ~gt, each with a 1-px zero border around the
// image; the n_exclude pixels (x, y) of `exclude` (pairs; outside the image: ignored) are 0.
void error_regions(const Mask2D& pred, const Mask2D& gt, const int64_t* exclude, int64_t n_exclude,
                   float* dist_fn, float* dist_fp, int num_threads);
// The maximum of the two maps above (larger wins, ties -> negative), its first pixel in
// row-major order; no map is materialised, each is swept on its region's bounding box only.
ClickResult next_click(const Mask2D& pred, const Mask2D& gt, const int64_t* exclude,
                       int64_t n_exclude, int num_threads);
}  // namespace cpu

#ifdef MSRT_WITH_CUDA
namespace cuda {
// The same semantics on device memory: kernels run on device `device`, enqueued on `stream` (a
// cudaStream_t). Masks may have any strides; outputs and `scratch` (int32, 8-byte aligned) are
// C-contiguous device buffers the caller allocated. `exclude` stays in host memory.
// Rows wider than max_width(device) do not fit the row kernel's shared memory.
int64_t max_width(int device);
// scratch for distance_transform and error_regions: dt_scratch_elems(n_exclude) int32.
int64_t dt_scratch_elems(int64_t n_exclude);
void distance_transform(const Mask2D& mask, float* out, int32_t* scratch, int device, void* stream);
void error_regions(const Mask2D& pred, const Mask2D& gt, const int64_t* exclude, int64_t n_exclude,
                   float* dist_fn, float* dist_fp, int32_t* scratch, int device, void* stream);
// scratch: click_scratch_elems(H, W, n_exclude) int32. Synchronises the stream.
int64_t click_scratch_elems(int64_t height, int64_t width, int64_t n_exclude);
ClickResult next_click(const Mask2D& pred, const Mask2D& gt, const int64_t* exclude,
                       int64_t n_exclude, int32_t* scratch, int device, void* stream);
}  // namespace cuda
#endif

}  // namespace msrt
