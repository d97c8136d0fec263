// parallel_for(): the helper pool described in parallel.h.
#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
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
  std::atomic<int> active{0};    // helpers still inside drain(); incremented under Pool::mutex
};

// How long the calling thread polls for helpers still finishing their last chunk before it
// sleeps. Sleeping hands the core to other work, and on a busy machine getting it back takes
// milliseconds (measured: a 1-box crop at 2 threads took 2-7 ms instead of 0.5 ms when the caller
// slept here); a helper that holds a chunk is normally running and done within one chunk
// (<= ~10 us), so a bounded poll wins. Only a helper preempted mid-chunk outlasts it.
constexpr int kPollIterations = 20000;  // ~50-100 us of pause instructions

// When the poll above runs out, a helper was preempted mid-chunk: the machine is busy, and the
// next calls would likely wait for a preempted helper again (measured: 2-17 ms for a 2 ms job).
// So the pool backs off: calls run on the caller's thread alone for this long, then try again.
constexpr std::chrono::milliseconds kBackoff{200};

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
    keep_off_cpu_of_caller();
    wake_.notify_all();
    drain(job);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = nullptr;  // helpers that wake from now on find nothing to join
    }
    for (int i = 0; i < kPollIterations; ++i) {
      if (job.active.load(std::memory_order_acquire) == 0) return;
      cpu_relax();
    }
    backoff_until_.store((std::chrono::steady_clock::now() + kBackoff).time_since_epoch().count(),
                         std::memory_order_relaxed);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return job.active.load(std::memory_order_acquire) == 0; });
  }

  // True while backing off (see kBackoff): the caller should run alone.
  bool backing_off() const {
    return std::chrono::steady_clock::now().time_since_epoch().count() <
           backoff_until_.load(std::memory_order_relaxed);
  }

 private:
  Pool() = default;

  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  static long current_pid() {
#if defined(__linux__)
    return static_cast<long>(getpid());
#else
    return 1;
#endif
  }

  void spawn() {
    ++threads_;
    std::thread t([this] { helper_loop(); });
#if defined(__linux__)
    handles_.push_back(t.native_handle());
#endif
    t.detach();  // the thread never ends (helper_loop loops forever); its handle stays valid
    excluded_cpu_ = -2;  // the new helper has the default affinity: set it on the next job
  }

  // Lets the helpers run on any CPU of this process except the one the caller runs on. A woken
  // thread is otherwise often placed on the waker's CPU (wake-affine) when every CPU is busy,
  // where it preempts the caller or queues behind it: measured on a busy 2-core machine, that
  // turned a 0.5 ms crop into 2-7 ms at 2 threads. Elsewhere it competes with other processes'
  // threads, as a newly woken thread, which the scheduler serves promptly. One syscall per
  // helper, and only when the caller moved to another CPU since the last job.
  void keep_off_cpu_of_caller() {
#if defined(__linux__)
    const int cpu = sched_getcpu();
    if (cpu < 0 || cpu == excluded_cpu_) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return;
    if (CPU_COUNT(&set) < 2) return;
    CPU_CLR(cpu, &set);
    for (pthread_t h : handles_) pthread_setaffinity_np(h, sizeof set, &set);
    excluded_cpu_ = cpu;
#endif
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
      job->active.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      drain(*job);
      // The caller may return (and free the job) as soon as this reaches 0: no job access after.
      const bool last = job->active.fetch_sub(1, std::memory_order_acq_rel) == 1;
      lock.lock();  // under the mutex: a caller between its predicate check and its sleep cannot miss it
      if (last) done_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  Job* job_ = nullptr;     // the job helpers may join, or nullptr
  uint64_t generation_ = 0;
  size_t threads_ = 0;
#if defined(__linux__)
  std::vector<pthread_t> handles_;  // guarded by mutex_ (spawn) / the job slot (keep_off_cpu_of_caller)
#endif
  int excluded_cpu_ = -2;
  std::atomic<std::chrono::steady_clock::rep> backoff_until_{0};
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
  Pool& pool = Pool::instance();
  if (pool.backing_off()) {
    fn(0, tasks);
    return;
  }
  Job job;
  job.fn = &fn;
  job.tasks = tasks;
  job.chunk = chunk;
  pool.run(job, helpers);
}

}  // namespace vitpose_trt
