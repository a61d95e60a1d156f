// Batched mask metrics: per-mask intersection, prediction area and reference area between N
// predicted masks and one (broadcast) or N reference masks. IoU and Dice are derived from these
// exact integer counts on the Python side (medsam_agent_rt/ops/metrics.py).
#pragma once

#include <cstdint>
#include <type_traits>

#include "common/checks.h"
#include "common/macros.h"
#include "common/tensor.h"

namespace msrt {

// One (N, H, W) operand, read in place through element strides (any sign); stride_n == 0 reuses
// one mask for every n. bool/uint8 pixels are inside when non-zero; float32/float64 pixels when
// value > threshold, compared in the operand's own precision (NumPy and torch semantics for
// `array > python_float`).
struct MaskOperand {
  const void* data = nullptr;
  DType dtype = DType::UInt8;
  int64_t stride_n = 0, stride_y = 0, stride_x = 0;
  double threshold = 0.0;
};

// Problem size after collapse_rows(): n masks of h rows x w columns.
struct MaskShape {
  int64_t n = 0, h = 0, w = 0;
};

// When every row of both operands continues where the previous one ended, treat each mask as a
// single row of h*w pixels (long contiguous runs; no per-row work). Same on CPU and CUDA.
inline void collapse_rows(MaskShape& s, MaskOperand& a, MaskOperand& b) {
  const bool a_flat = s.h == 1 || a.stride_y == s.w * a.stride_x;
  const bool b_flat = s.h == 1 || b.stride_y == s.w * b.stride_x;
  if (a_flat && b_flat) {
    s.w *= s.h;
    s.h = 1;
    a.stride_y = s.w * a.stride_x;
    b.stride_y = s.w * b.stride_x;
  }
}

// Calls f(T{}) with T the storage type the kernels read for a mask dtype.
template <typename F>
void with_mask_type(DType dtype, const char* name, F&& f) {
  switch (dtype) {
    case DType::Bool:
    case DType::UInt8: f(uint8_t{}); break;
    case DType::Float32: f(float{}); break;
    case DType::Float64: f(double{}); break;
    default: fail(name, " must be bool, uint8, float32 or float64, got ", dtype_name(dtype));
  }
}

// The threshold in an operand's storage type (unused for bytes: no out-of-range conversion).
template <typename T>
MSRT_HD T threshold_as(double threshold) {
  if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(threshold);
  } else {
    return T{0};
  }
}

// The binarisation rule, shared by both backends.
MSRT_HD bool mask_inside(uint8_t v, uint8_t) { return v != 0; }
MSRT_HD bool mask_inside(float v, float threshold) { return v > threshold; }
MSRT_HD bool mask_inside(double v, double threshold) { return v > threshold; }

namespace cpu {
// counts: (n, 3) int64, row-major: intersection, pred area, target area. Exact integer sums:
// independent of the thread count (num_threads <= 0: cpu/parallel.h's default).
void mask_counts(const MaskOperand& pred, const MaskOperand& target, MaskShape shape,
                 int64_t* counts, int num_threads);
}  // namespace cpu

#ifdef MSRT_WITH_CUDA
namespace cuda {
// As cpu::mask_counts, with device pointers; counts is zeroed and filled on `stream`
// (asynchronous: the caller's framework orders later reads on the same stream).
void mask_counts(const MaskOperand& pred, const MaskOperand& target, MaskShape shape,
                 int64_t* counts, int device, void* stream);
}  // namespace cuda
#endif

}  // namespace msrt
