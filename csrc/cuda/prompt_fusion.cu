// CUDA prompt-embedding fusion: one thread per (slot, frequency) pair, grid-stride. Mirrors
// cpu/prompt_fusion.cpp (same function names and formula; sincos_turns is shared).
#include "common/cuda_utils.cuh"
#include "ops/prompt_fusion.h"

namespace msrt::cuda {
namespace {

constexpr int kThreads = 128;

template <typename L>
__device__ __forceinline__ int64_t label_at(const PromptFusionArgs& a, int64_t s) {
  return static_cast<int64_t>(static_cast<const L*>(a.labels)[s * a.labels_stride]);
}

// Thread (slot s, frequency k) writes out[s][k] (sin) and out[s][k + C/2] (cos).
template <typename L>
__global__ void __launch_bounds__(kThreads)
    encode_token(PromptFusionArgs a, int32_t* __restrict__ error_flag) {
  const int64_t half = a.embed_dim / 2;
  const int64_t total = a.num_slots * half;
  MSRT_GRID_STRIDE_LOOP(i, total) {
    const int64_t s = i / half, k = i - s * half;
    float* row = a.out + s * a.embed_dim;
    const int64_t label = s < a.num_tokens ? label_at<L>(a, s) : -1;
    if (label < -1 || label > 3) {
      row[k] = row[k + half] = __int_as_float(0x7fc00000);  // NaN: the caller raises
      *error_flag = 1;
      continue;
    }
    const float* emb = a.label_embed + (label + 1) * a.embed_dim;
    if (label < 0) {
      row[k] = emb[k];
      row[k + half] = emb[k + half];
      continue;
    }
    const float* xy = a.coords + s * a.coords_stride_s;
    const double qx = 2.0 * ((static_cast<double>(xy[0]) + 0.5) / a.input_w) - 1.0;
    const double qy = 2.0 * ((static_cast<double>(xy[a.coords_stride_c]) + 0.5) / a.input_h) - 1.0;
    const double t =
        qx * static_cast<double>(a.gaussian[k]) + qy * static_cast<double>(a.gaussian[half + k]);
    float sv, cv;
    sincos_turns(t, sv, cv);
    row[k] = static_cast<float>(sv + static_cast<double>(emb[k]));
    row[k + half] = static_cast<float>(cv + static_cast<double>(emb[k + half]));
  }
}

template <typename L>
void encode_impl(const PromptFusionArgs& a, int32_t* error_flag, cudaStream_t stream) {
  const int64_t total = a.num_slots * (a.embed_dim / 2);
  encode_token<L><<<detail::grid_blocks(total, kThreads), kThreads, 0, stream>>>(a, error_flag);
  MSRT_CUDA_CHECK_LAUNCH("encode_sparse_prompts (encode_token kernel)");
}

}  // namespace

void encode_sparse_prompts(const PromptFusionArgs& args, int32_t* error_flag, int device,
                           void* stream_ptr) {
  detail::DeviceGuard guard(device);
  const cudaStream_t stream = detail::as_stream(stream_ptr);
  MSRT_CUDA_CHECK(cudaMemsetAsync(error_flag, 0, sizeof(int32_t), stream),
                  "encode_sparse_prompts (cudaMemsetAsync of the error flag)");
  if (args.num_slots == 0 || args.embed_dim == 0) return;
  with_label_type(args.labels_dtype,
                  [&](auto l) { encode_impl<decltype(l)>(args, error_flag, stream); });
}

}  // namespace msrt::cuda
