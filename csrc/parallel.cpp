// parallel_for(): the helper pool described in parallel.h.
#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#include <unistd.h>
#endif

namespace vitpose_trt {
namespace {

struct Job {
  const std::function<void(int64_t, int64_t)>* fn;
  int64_t tasks, chunk;
  std::atomic<int64_t> next{0};  // first task of the next unclaimed chunk
  int max_helpers = 0;           // guarded by Pool::mutex
  int joined = 0;                // helpers that took part (guarded by Pool::mutex)
  int active = 0;                // helpers still inside drain() (guarded by Pool::mutex)
};

// Claims chunks until none is left.
void drain(Job& job) {
  for (;;) {
    const int64_t begin = job.next.fetch_add(job.chunk, std::memory_order_relaxed);
    if (begin >= job.tasks) return;
    (*job.fn)(begin, std::min(begin + job.chunk, job.tasks));
  }
}

class Pool {
 public:
  // The process's pool; a fresh one after fork() (the child has none of the parent's threads,
  // and the parent's mutex may have been held at the fork). Never destroyed: helpers are
  // detached and end with the process, so interpreter shutdown never waits for them.
  static Pool& instance() {
    static std::mutex guard;
    static Pool* pool = nullptr;
    static long owner = 0;
    const long pid = current_pid();
    std::lock_guard<std::mutex> lock(guard);
    if (pool == nullptr || owner != pid) {
      pool = new Pool();  // the previous one (another process's) is deliberately leaked
      owner = pid;
    }
    return *pool;
  }

  void run(Job& job, int helpers) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (job_ != nullptr) {  // another caller holds the pool: run alone rather than queue
        lock.unlock();
        drain(job);
        return;
      }
      while (static_cast<int>(threads_) < helpers) spawn();
      job.max_helpers = helpers;
      job_ = &job;
      ++generation_;
    }
    wake_.notify_all();
    drain(job);
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = nullptr;  // helpers that wake from now on find nothing to join
    done_.wait(lock, [&] { return job.active == 0; });
  }

 private:
  Pool() = default;

  static long current_pid() {
#if defined(__linux__)
    return static_cast<long>(getpid());
#else
    return 1;
#endif
  }

  void spawn() {
    ++threads_;
    std::thread([this] { helper_loop(); }).detach();
  }

  void helper_loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    uint64_t seen = generation_;
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });  // a futex wait: no spinning
      seen = generation_;
      Job* job = job_;
      if (job == nullptr || job->joined >= job->max_helpers) continue;
      ++job->joined;
      ++job->active;
      lock.unlock();
      drain(*job);
      lock.lock();
      if (--job->active == 0) done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  Job* job_ = nullptr;     // the job helpers may join, or nullptr
  uint64_t generation_ = 0;
  size_t threads_ = 0;
};

}  // namespace

int default_threads() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void parallel_for(int64_t tasks, int64_t chunk, int threads, const std::function<void(int64_t, int64_t)>& fn) {
  if (tasks <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int64_t chunks = (tasks + chunk - 1) / chunk;
  const int helpers = static_cast<int>(std::min<int64_t>(threads, chunks)) - 1;
  if (helpers <= 0) {
    fn(0, tasks);
    return;
  }
  Job job;
  job.fn = &fn;
  job.tasks = tasks;
  job.chunk = chunk;
  Pool::instance().run(job, helpers);
}

}  // namespace vitpose_trt
