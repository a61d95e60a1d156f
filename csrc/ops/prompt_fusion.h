// Prompt-embedding fusion: SAM's sparse prompt encoding (points, pad token, box corners) in one
// pass: (x, y) + 0.5 -> / (W, H) -> 2q - 1 -> @ G (2 x C/2) -> sin/cos(2 pi .) -> + label row,
// padded with not-a-point rows to a fixed slot count. Spec: ops/reference.py.
#pragma once

#include <cstdint>

#include "common/checks.h"
#include "common/macros.h"
#include "common/tensor.h"

namespace msrt {

struct PromptFusionArgs {
  const float* coords = nullptr;  // (S, 2) x, y in model-input pixels; element strides below
  int64_t coords_stride_s = 2, coords_stride_c = 1;
  const void* labels = nullptr;  // (S,) int32 or int64 in {-1 pad, 0 neg, 1 pos, 2, 3 corners}
  DType labels_dtype = DType::Int64;
  int64_t labels_stride = 1;
  const float* gaussian = nullptr;     // (2, C/2) contiguous
  const float* label_embed = nullptr;  // (5, C) contiguous: not-a-point, neg, pos, corner 1, 2
  int64_t num_tokens = 0, num_slots = 0, embed_dim = 0;
  double input_h = 0.0, input_w = 0.0;  // the model's padded input frame
  float* out = nullptr;                 // (num_slots, C) contiguous
};

// sin(2 pi t) and cos(2 pi t) for |t| < 2^49, absolute error < 1e-7 (float32 rounding).
// The range reduction to the nearest quarter turn is done in float64, where it is exact
// (Sterbenz), so a large |t| loses no accuracy; the reduced angle |x| <= pi/4 is then evaluated
// by Taylor polynomials of degree 9 (sin) and 10 (cos) in float32, whose truncation errors are
// < 2e-9. Branch-free: vectorises on the CPU (8 lanes with AVX2), identical on the GPU.
MSRT_HD void sincos_turns(double t, float& s, float& c) {
  const double kRound = 6755399441055744.0;           // 1.5 * 2^52: (v + kRound) - kRound = rint(v)
  const double q4 = (4.0 * t + kRound) - kRound;      // nearest quarter turn
  const float r = static_cast<float>(t - 0.25 * q4);  // |r| <= 1/8 turn; the difference is exact
  const float x = r * 6.28318530717958647692f;        // radians, |x| <= pi/4
  const float x2 = x * x;
  const float sp =
      x *
      (1.0f + x2 * (-1.0f / 6 + x2 * (1.0f / 120 + x2 * (-1.0f / 5040 + x2 * (1.0f / 362880)))));
  const float cp =
      1.0f + x2 * (-0.5f + x2 * (1.0f / 24 + x2 * (-1.0f / 720 +
                                                   x2 * (1.0f / 40320 + x2 * (-1.0f / 3628800)))));
  const double q = q4 - 4.0 * ((0.25 * q4 + kRound) - kRound);  // quadrant in {-2, ..., 2}
  s = q == 0.0 ? sp : q == 1.0 ? cp : q == -1.0 ? -cp : -sp;
  c = q == 0.0 ? cp : q == 1.0 ? -sp : q == -1.0 ? sp : -cp;
}

// Calls f(T{}) with T = int32_t or int64_t for the labels' dtype.
template <typename F>
void with_label_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Int32: f(int32_t{}); break;
    case DType::Int64: f(int64_t{}); break;
    default: fail("labels must be int32 or int64, got ", dtype_name(dtype));
  }
}

namespace cpu {
// Raises ArgumentError (before writing anything) when a label is outside -1..3.
void encode_sparse_prompts(const PromptFusionArgs& args);
}  // namespace cpu

#ifdef MSRT_WITH_CUDA
namespace cuda {
// As cpu::encode_sparse_prompts with device pointers, asynchronous on `stream`. A label outside
// -1..3 makes its row NaN and sets *error_flag (device int32, zeroed here) to 1; the caller reads
// the flag and raises.
void encode_sparse_prompts(const PromptFusionArgs& args, int32_t* error_flag, int device,
                           void* stream);
}  // namespace cuda
#endif

}  // namespace msrt
