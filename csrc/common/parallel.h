// Thread-team sizing for the CPU kernels: at most one thread per `grain` units of work, so a
// small call runs on the calling thread alone and a large one uses every core. Grains are
// ~15-70 us of single-thread work, so a fork/join (a few us) costs < 20%; torch's CPU ops fork
// at 32K elements, far smaller. On an oversubscribed machine any OpenMP team (ours or torch's)
// can stall for a scheduler time slice when a member is descheduled; OMP_NUM_THREADS=1 avoids it.
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
