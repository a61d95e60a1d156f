// See parallel.h. One process-wide pool of default_threads() - 1 helper threads, created on first
// use and never destroyed (joining threads during interpreter shutdown can deadlock).
#include "cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace msrt::cpu {
namespace {

struct Job {
  const std::function<void(int64_t)>* fn = nullptr;
  int64_t n = 0;
  int max_helpers = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int> helpers{0};
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<int64_t> finished{0};
  std::exception_ptr error;  // guarded by mu

  // Claims and runs items until none is left (then fn is never touched again).
  void run() {
    for (;;) {
      const int64_t i = next.fetch_add(1);
      if (i >= n) return;
      try {
        (*fn)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!error) error = std::current_exception();
      }
      if (finished.fetch_add(1) + 1 == n) {    // the last item: wake the caller (under mu, so the
        std::lock_guard<std::mutex> lock(mu);  // wake-up cannot fall between its check and wait)
        cv.notify_all();
      }
    }
  }
};

class Pool {
 public:
  explicit Pool(int helpers) {
    for (int i = 0; i < helpers; ++i) threads_.emplace_back([this] { loop(); });
    for (auto& t : threads_) t.detach();
  }
  int helpers() const { return int(threads_.size()); }

  void post(std::shared_ptr<Job> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = std::move(job);
      ++generation_;
    }
    cv_.notify_all();
  }

 private:
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
      }
      if (job && job->helpers.fetch_add(1) < job->max_helpers) job->run();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
  std::vector<std::thread> threads_;
};

// Process state; a forked child starts over with fresh objects (the parent's may be locked).
std::mutex* g_lock = new std::mutex;
Pool* g_pool = nullptr;
bool g_busy = false;

#if defined(__linux__)
void reset_in_child() {
  g_lock = new std::mutex;  // the old objects are leaked on purpose
  g_pool = nullptr;
  g_busy = false;
}
const int g_atfork = pthread_atfork(nullptr, nullptr, reset_in_child);
#endif

int env_threads(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return 0;
  const int n = std::atoi(v);  // OMP_NUM_THREADS may list levels ("4,2"): the first counts
  return n > 0 ? n : 0;
}

void run_serial(int64_t n, const std::function<void(int64_t)>& fn) {
  for (int64_t i = 0; i < n; ++i) fn(i);
}

}  // namespace

int default_threads() {
  static const int n = [] {
    if (int e = env_threads("MSRT_NUM_THREADS")) return e;
    if (int e = env_threads("OMP_NUM_THREADS")) return e;
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return std::max(1, int(std::thread::hardware_concurrency()));
  }();
  return n;
}

void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& fn) {
  if (threads <= 0) threads = default_threads();
  if (n <= 1 || threads <= 1) return run_serial(n, fn);
  std::mutex* lock = g_lock;
  Pool* pool = nullptr;
  {
    std::lock_guard<std::mutex> guard(*lock);
    if (!g_busy) {
      if (!g_pool) g_pool = new Pool(std::max(0, default_threads() - 1));
      pool = g_pool;
      g_busy = true;
    }
  }
  if (!pool || pool->helpers() == 0) {
    if (pool) {
      std::lock_guard<std::mutex> guard(*lock);
      g_busy = false;
    }
    return run_serial(n, fn);
  }
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  job->max_helpers = int(std::min<int64_t>({threads - 1, pool->helpers(), n - 1}));
  pool->post(job);
  job->run();
  {
    std::unique_lock<std::mutex> wait(job->mu);
    job->cv.wait(wait, [&] { return job->finished.load() == n; });
  }
  {
    std::lock_guard<std::mutex> guard(*lock);
    g_busy = false;
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace msrt::cpu
