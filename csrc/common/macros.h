// Portability macros shared by the CPU (.cpp) and CUDA (.cu) kernels.
#pragma once

// Functions that both the host kernels and the device kernels call (index and weight math that
// must be bit-identical on both sides).
#if defined(__CUDACC__)
#define MSRT_HD __host__ __device__ __forceinline__
#else
#define MSRT_HD inline
#endif

// Hot CPU loops compiled twice, for AVX2 and for the baseline ISA, picked at load time (GCC
// function multiversioning via ifunc). AVX2 only, no FMA: both clones round identically, so
// results do not depend on the machine's ISA.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && defined(__x86_64__) && \
    defined(__linux__)
#define MSRT_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MSRT_SIMD_CLONES
#endif
