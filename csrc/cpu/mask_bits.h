// Row scanning helpers shared by cpu/components.cpp and cpu/distance.cpp: 64 mask bytes -> one
// 64-bit word of "pixel is set" bits (SSE2 where available), and the runs of set bits in a row.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace msrt::cpu::bits {

inline int ctz64(uint64_t v) { return __builtin_ctzll(v); }

// Bit i = (p[i] != 0) for i < 64 (p must hold 64 readable bytes).
inline uint64_t nonzero64(const uint8_t* p) {
#if defined(__SSE2__)
  const __m128i z = _mm_setzero_si128();
  uint64_t zero = 0;
  for (int k = 0; k < 4; ++k) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * k));
    zero |= uint64_t(uint32_t(_mm_movemask_epi8(_mm_cmpeq_epi8(v, z))) & 0xFFFFu) << (16 * k);
  }
  return ~zero;
#else
  uint64_t b = 0;
  for (int i = 0; i < 64; ++i) b |= uint64_t(p[i] != 0) << i;
  return b;
#endif
}

// Bits of a row segment of n <= 64 pixels starting at p; bits >= n are 0. Strided rows are never
// seen here: the bindings hand over rows with unit column stride.
inline uint64_t nonzero_bits(const uint8_t* p, int n) {
  if (n == 64) return nonzero64(p);
  alignas(16) uint8_t buf[64] = {0};
  std::memcpy(buf, p, size_t(n));
  return nonzero64(buf);
}

inline uint64_t valid_mask(int n) { return n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1; }

// Calls emit(start, end) (end exclusive) for every run of set bits in a row of `width` pixels,
// left to right; `word(x0, n)` returns the set bits of pixels [x0, x0 + n), bits >= n zero.
template <typename WordFn, typename Emit>
inline void for_each_run(int32_t width, WordFn&& word, Emit&& emit) {
  bool in_run = false;
  int32_t start = 0;
  for (int32_t x0 = 0; x0 < width; x0 += 64) {
    const int n = width - x0 < 64 ? int(width - x0) : 64;
    const uint64_t set = word(x0, n);
    int pos = 0;
    while (pos < 64) {
      const uint64_t look = (in_run ? ~set : set) & (~uint64_t(0) << pos);
      if (!look) break;
      const int p = ctz64(look);
      if (in_run) {
        emit(start, x0 + p);
        in_run = false;
      } else {
        start = x0 + p;
        in_run = true;
      }
      pos = p;
    }
  }
  if (in_run) emit(start, width);
}

}  // namespace msrt::cpu::bits
