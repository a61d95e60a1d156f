// CPU prompt-embedding fusion: one token (row) at a time, the inner loop over the C/2 Fourier
// frequencies vectorises. Mirrors cuda/prompt_fusion.cu (same function names and formula).
#include "ops/prompt_fusion.h"

#include <algorithm>

namespace msrt::cpu {
namespace {

template <typename L>
int64_t label_at(const PromptFusionArgs& a, int64_t s) {
  return static_cast<int64_t>(static_cast<const L*>(a.labels)[s * a.labels_stride]);
}

// One token: PE(coord) + label row, or the not-a-point row for the pad label.
MSRT_SIMD_CLONES void encode_token(const PromptFusionArgs& a, int64_t label, float x, float y,
                                   float* out) {
  const int64_t half = a.embed_dim / 2;
  const float* emb = a.label_embed + (label + 1) * a.embed_dim;
  if (label < 0) {
    std::copy(emb, emb + a.embed_dim, out);
    return;
  }
  const double qx = 2.0 * ((static_cast<double>(x) + 0.5) / a.input_w) - 1.0;
  const double qy = 2.0 * ((static_cast<double>(y) + 0.5) / a.input_h) - 1.0;
  const float* g0 = a.gaussian;
  const float* g1 = a.gaussian + half;
  for (int64_t k = 0; k < half; ++k) {
    const double t = qx * static_cast<double>(g0[k]) + qy * static_cast<double>(g1[k]);
    float s, c;
    sincos_turns(t, s, c);
    out[k] = static_cast<float>(s + static_cast<double>(emb[k]));
    out[k + half] = static_cast<float>(c + static_cast<double>(emb[k + half]));
  }
}

template <typename L>
void encode_impl(const PromptFusionArgs& a) {
  for (int64_t s = 0; s < a.num_tokens; ++s) {  // validate first: no partial output
    const int64_t label = label_at<L>(a, s);
    MSRT_CHECK(label >= -1 && label <= 3, "labels must be in -1..3, got ", label, " at index ", s);
  }
  for (int64_t s = 0; s < a.num_slots; ++s) {
    float* row = a.out + s * a.embed_dim;
    if (s < a.num_tokens) {
      const float* xy = a.coords + s * a.coords_stride_s;
      encode_token(a, label_at<L>(a, s), xy[0], xy[a.coords_stride_c], row);
    } else {
      encode_token(a, -1, 0.f, 0.f, row);
    }
  }
}

}  // namespace

void encode_sparse_prompts(const PromptFusionArgs& args) {
  with_label_type(args.labels_dtype, [&](auto l) { encode_impl<decltype(l)>(args); });
}

}  // namespace msrt::cpu
