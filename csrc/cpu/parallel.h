// A small work-sharing loop for the CPU kernels (instead of OpenMP's fork-join teams).
//
// OpenMP ends every parallel region with a barrier that waits for every thread of the team, so on
// a machine whose cores are busy (other processes, an LLM decoding next to us) one descheduled
// thread stalls the call for a scheduler period: measured here, 1 ms of work took 48 ms. Here the
// caller works too and items are claimed one at a time from a shared counter; a helper that wakes
// late finds nothing left and the call never waits for it.
#pragma once

#include <cstdint>
#include <functional>

namespace msrt::cpu {

// MSRT_NUM_THREADS, else OMP_NUM_THREADS, else the number of CPUs this process may run on.
int default_threads();

// Calls fn(i) for every i in [0, n), on at most `threads` threads (<= 0: default_threads()), the
// caller included, and returns when all have run; rethrows the first exception an item threw.
// Concurrent calls from other threads (and calls in a forked child) run on their caller alone.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& fn);

}  // namespace msrt::cpu
