// Pass 2 of the CPU distance transform (cpu/distance.cpp): the exact lower envelope of the
// parabolas of one run of region pixels, and the float32 roots. Private to cpu/distance.cpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/edt_columns.h"
#include "cpu/mask_bits.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace msrt::cpu::edt {

// Per-thread envelope storage: sites v with f = g^2, and the exact start of each parabola's
// reign z = zn / zd (zd > 0).
struct Envelope {
  std::vector<int64_t> v, f, zn, zd;
  explicit Envelope(int64_t w) : v(w + 2), f(w + 2), zn(w + 2), zd(w + 2) {}
};

// Squared distances of the pixels [s, e) of one region run into d2[0 .. e - s), from the sites
// s - 1 .. e of the row's g (sites -1 and W exist when that side of the grid is zero).
inline void run_envelope(const int32_t* g, int64_t w, int64_t s, int64_t e, const Grid& gr,
                         Envelope& env, int32_t* d2) {
  int64_t* v = env.v.data();
  int64_t* f = env.f.data();
  int64_t* zn = env.zn.data();
  int64_t* zd = env.zd.data();
  int64_t k = -1;
  auto push = [&](int64_t q, int64_t fq) {
    while (k >= 0) {
      const int64_t n = (fq + q * q) - (f[k] + v[k] * v[k]);
      const int64_t d = 2 * (q - v[k]);
      if (k > 0 && n * zd[k] <= zn[k] * d) {  // q undercuts v[k] before v[k]'s reign starts
        --k;
        continue;
      }
      ++k;
      v[k] = q, f[k] = fq, zn[k] = n, zd[k] = d;
      return;
    }
    k = 0;
    v[0] = q, f[0] = fq;
  };
  if (s > 0 || gr.zero_left) push(s - 1, 0);
  for (int64_t i = s; i < e; ++i) {
    const int64_t gi = g[i];
    if (gi < gr.inf) push(i, gi * gi);  // an INF column never wins: some site is finite
  }
  if (e < w || gr.zero_right) push(e, 0);
  int64_t j = 0;
  for (int64_t x = s; x < e; ++x) {
    while (j < k && zn[j + 1] <= x * zd[j + 1]) ++j;
    const int64_t dx = x - v[j];
    d2[x - s] = int32_t(dx * dx + f[j]);
  }
}

// Calls fn(s, e, d2) for every region run [s, e) of row y, gy the row's column distances.
template <Region R, typename Fn>
inline void for_each_run_d2(const Grid& gr, const int32_t* gy, int64_t y, Envelope& env,
                            int32_t* d2, Fn&& fn) {
  const uint8_t* ra = gr.a.data + y * gr.a.stride_y;
  const uint8_t* rb = R == Region::Set ? ra : gr.b.data + y * gr.b.stride_y;
  bits::for_each_run(
      int32_t(gr.w), [&](int32_t x0, int n) { return region_bits<R>(ra + x0, rb + x0, n); },
      [&](int32_t s, int32_t e) {
        run_envelope(gy, gr.w, s, e, gr, env, d2);
        fn(s, e, d2);
      });
}

// Per-thread row buffers of the backward sweep and the row pass.
struct RowScratch {
  Envelope env;
  std::vector<int32_t> d2, next_zero, g;
  explicit RowScratch(int64_t w) : env(w), d2(size_t(w)), next_zero(size_t(w)), g(size_t(w)) {}
};

inline float root(int32_t d2) { return float(std::sqrt(double(d2))); }

// out[0 .. n) = float32(sqrt(d2)), exact as root().
inline void roots(const int32_t* d2, float* out, int64_t n, bool small) {
  int64_t i = 0;
#if defined(__SSE2__)
  if (small) {  // every d2 < 2^24: int -> float is exact and sqrtps is correctly rounded
    for (; i + 4 <= n; i += 4) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d2 + i));
      _mm_storeu_ps(out + i, _mm_sqrt_ps(_mm_cvtepi32_ps(v)));
    }
  }
#else
  (void)small;
#endif
  for (; i < n; ++i) out[i] = root(d2[i]);
}

}  // namespace msrt::cpu::edt
