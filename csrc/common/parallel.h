// Thread-team sizing for the CPU kernels. A parallel region costs a fork/join, and on a busy
// machine a descheduled team member stalls the whole region for a scheduler time slice, so each
// kernel asks for at most one thread per `grain` units of work (grains are ~100-200 us of
// single-thread work) and runs small problems on the calling thread alone.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(MSRT_WITH_OPENMP) && defined(_OPENMP)
#include <omp.h>
#endif

namespace msrt {

inline int threads_for(int64_t work, int64_t grain) {
#if defined(MSRT_WITH_OPENMP) && defined(_OPENMP)
  const int64_t want = grain > 0 ? work / grain : 1;
  return static_cast<int>(std::clamp<int64_t>(want, 1, omp_get_max_threads()));
#else
  (void)work;
  (void)grain;
  return 1;
#endif
}

}  // namespace msrt
