// CPU parallelism of the *_cpu kernels: a small pool of helper threads that never makes a call
// wait for a helper that has not started.
//
// Why not OpenMP: an OpenMP region ends in a barrier that waits for every thread of the team, so
// on a machine whose cores are busy with other work (a video decoder, a detector, other
// processes) each call waits until the OS schedules the second thread: measured on a busy 2-core
// machine, a 1-box crop took 16 ms at 2 threads instead of 0.48 ms at 1 (docs/BENCHMARKS.md,
// "C++ kernels: threads and load"). Here the calling thread does the work itself, in chunks
// taken from a shared counter; helpers are woken (futex, no spinning) and take chunks too if
// they get a core in time. When the counter runs out the call waits only for helpers that are
// running a chunk, never for one that has not woken up: a late helper finds the job closed and
// goes back to sleep. On an idle machine the helpers share the work; on a busy one the call
// costs what one thread costs, plus ~2 us of signalling.
//
// Thread count: every *_cpu entry point takes `threads` (1 = the calling thread alone, no helper
// is touched); the binding's default is default_threads(), the CPUs this process may run on.
// One job uses the pool at a time; a concurrent call (another Python thread) runs on its own
// thread alone rather than waiting for the pool.
#pragma once

#include <cstdint>
#include <functional>

namespace vitpose_trt {

// The CPUs this process may run on (sched_getaffinity where available, else
// std::thread::hardware_concurrency()), at least 1.
int default_threads();

// Calls fn(begin, end) over [0, tasks) in chunks of `chunk` tasks, on the calling thread and on
// up to `threads - 1` helpers, and returns when every task is done. threads <= 1, or tasks that
// fit in one chunk, run on the calling thread only. fn must be safe to call concurrently on
// disjoint ranges. An exception thrown by fn is not supported (the kernels do not throw).
void parallel_for(int64_t tasks, int64_t chunk, int threads, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace vitpose_trt
