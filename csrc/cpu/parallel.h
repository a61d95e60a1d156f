// The one threading mechanism of the CPU kernels: a work-sharing loop on a small helper pool.
//
// Thread count (documented once, here): MSRT_NUM_THREADS, else OMP_NUM_THREADS (the first level
// when it lists several), else the number of CPUs this process may run on; read once per
// process. Kernels that take a `num_threads` argument use it instead when it is > 0 (tests force
// small inputs into several pieces this way). Results never depend on the thread count: every
// kernel splits its work into pieces whose results do not depend on who computes them.
//
// Why not OpenMP: an OpenMP team ends every parallel region with a barrier that waits for every
// member, so on a machine whose cores are busy (other processes, an LLM decoding next to us) one
// descheduled thread stalls the call for a scheduler period (measured: 0.6 ms of labelling took
// 48 ms). Here the caller works too and items are claimed one at a time from a shared counter; a
// helper that wakes late finds nothing left and the call never waits for it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

namespace msrt::cpu {

// MSRT_NUM_THREADS, else OMP_NUM_THREADS, else the number of CPUs this process may run on.
int default_threads();

// Threads for `work` units: `requested` when > 0, else default_threads() capped so that each
// thread gets at least `grain` units (a small call then runs on the caller alone).
inline int threads_for(int64_t work, int64_t grain, int requested) {
  if (requested > 0) return requested;
  const int64_t want = grain > 0 ? work / grain : 1;
  return static_cast<int>(std::clamp<int64_t>(want, 1, default_threads()));
}

// Calls fn(i) for every i in [0, n), on at most `threads` threads (<= 0: default_threads()), the
// caller included, and returns when all have run; rethrows the first exception an item threw.
// Concurrent calls from other threads (and calls in a forked child) run on their caller alone.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& fn);

// Calls fn(begin, end) for consecutive ranges covering [0, n): about `per_thread` ranges per
// thread (so a late helper leaves little to the others), shared by parallel_for.
inline void parallel_ranges(int64_t n, int threads, int per_thread,
                            const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (threads <= 0) threads = default_threads();
  if (threads == 1) return fn(0, n);
  const int64_t pieces = std::clamp<int64_t>(int64_t(threads) * per_thread, 1, n);
  const int64_t step = (n + pieces - 1) / pieces;
  parallel_for((n + step - 1) / step, threads,
               [&](int64_t i) { fn(i * step, std::min(n, (i + 1) * step)); });
}

}  // namespace msrt::cpu
