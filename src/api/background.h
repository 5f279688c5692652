// api: the background purger thread (REMALLOC_BACKGROUND=1).
//
// Started lazily, from an allocator call that holds no remalloc lock, the
// first time the page heap has something to purge; created detached (it
// never keeps the process alive), with every signal blocked and a small
// stack, and it allocates nothing itself (pthread_create's own allocations
// come back into remalloc reentrantly, which the start-up state allows).
// It runs pages::background_step() in bounded batches and sleeps on a futex
// until the next purge is due, or, with nothing pending, until a run
// becomes dirty. While it runs, allocator calls do no decay and no heals.
// It exits when the option is turned off. A fork child has no thread: it
// starts its own, lazily, only if it has something to purge.
#pragma once
#include <atomic>

namespace remalloc::background {

extern bool g_enabled;                // the option, as last applied
extern std::atomic<int> g_state;      // 0 none, 1 starting, 2 running
bool work_pending();                  // the page heap has made dirty/split runs
void start();

// Called on allocator slow paths with no lock held: cheap unless a start
// is due.
inline void poll() {
  if (__builtin_expect(g_enabled, 0) && g_state.load(std::memory_order_relaxed) == 0 && work_pending()) start();
}
// Options changed: wake the thread (it exits if the option went off).
void configure(bool enabled);
// fork: the child has no thread.
void fork_child();
bool running();
size_t wakeups();

}  // namespace remalloc::background
